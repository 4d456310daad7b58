"""Issue 11, the Low findings on settings, and login brute force: django-axes locks a user name + address out
after LEADHUB_LOGIN_FAILURE_LIMIT failures; production settings pass `check --deploy`; the proxy header is
trusted only when a setting says a proxy of ours sets it; .env.example does not turn debug on."""

import os
import secrets
import subprocess
import sys

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.urls import reverse

pytestmark = pytest.mark.django_db

PRODUCTION = {
    "DJANGO_SETTINGS_MODULE": "leadhub.settings",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "LEADHUB_FIELD_ENCRYPTION_KEYS": "dGVzdC1vbmx5LWZpZWxkLWVuY3J5cHRpb24ta2V5LTA=",
    "ALLOWED_HOSTS": "leadhub.example.com",
    "SECURE_SSL_REDIRECT": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "SECURE_HSTS_PRELOAD": "1",
}


def production(tmp_path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ["PATH"], "DATABASE_URL": f"sqlite:///{tmp_path / 'p.sqlite3'}", **PRODUCTION, **extra}
    return subprocess.run(
        [sys.executable, *args], cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )


def test_password_guessing_is_locked_out(client):
    User.objects.create_superuser("boss", "boss@example.com", "the-right-password-123")
    login = reverse("admin:login")
    answers = [
        client.post(login, {"username": "boss", "password": "guess"}, REMOTE_ADDR="198.51.100.9").status_code
        for _ in range(settings.AXES_FAILURE_LIMIT)
    ]
    assert answers == [200] * (settings.AXES_FAILURE_LIMIT - 1) + [429]
    locked = client.post(login, {"username": "boss", "password": "the-right-password-123"}, REMOTE_ADDR="198.51.100.9")
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session
    other = client.post(login, {"username": "boss", "password": "the-right-password-123"}, REMOTE_ADDR="198.51.100.10")
    assert other.status_code == 302, "another address is not locked out: no one can lock a user out from afar"


def test_behind_a_trusted_proxy_the_forwarded_client_is_throttled_not_the_proxy(client, settings):
    settings.LEADHUB_TRUSTED_PROXY_COUNT = 1
    User.objects.create_superuser("boss", "boss@example.com", "the-right-password-123")
    login = reverse("admin:login")

    def attempt(password: str, forwarded: str) -> int:
        return client.post(
            login,
            {"username": "boss", "password": password},
            REMOTE_ADDR="127.0.0.1",
            HTTP_X_FORWARDED_FOR=forwarded,
        ).status_code

    # The attacker's own claim (left) is ignored: the proxy's entry (right) is the address throttled.
    guesses = [attempt("guess", f"10.9.9.{i}, 203.0.113.66") for i in range(settings.AXES_FAILURE_LIMIT)]
    assert guesses[-1] == 429
    assert attempt("the-right-password-123", "198.51.100.7") == 302, "the real user, elsewhere, is not locked out"


def test_production_settings_pass_check_deploy(tmp_path):
    checked = production(tmp_path, "manage.py", "check", "--deploy", "--fail-level", "WARNING")
    assert checked.returncode == 0, checked.stderr


def test_plain_http_outside_debug_fails_the_deployment_check(tmp_path):
    checked = production(
        tmp_path, "manage.py", "check", "--deploy", "--fail-level", "WARNING", LEADHUB_ALLOW_PLAIN_HTTP="1"
    )
    assert checked.returncode != 0 and "leadhub.E001" in checked.stderr


SHOW_PROXY_HEADER = (
    "import django; django.setup(); from django.conf import settings; print(settings.SECURE_PROXY_SSL_HEADER)"
)


def test_the_forwarded_proto_header_is_trusted_only_when_a_setting_says_so(tmp_path):
    assert production(tmp_path, "-c", SHOW_PROXY_HEADER).stdout.strip() == "None"
    trusted = production(tmp_path, "-c", SHOW_PROXY_HEADER, LEADHUB_TRUSTED_PROXY_SETS_X_FORWARDED_PROTO="1")
    assert "HTTP_X_FORWARDED_PROTO" in trusted.stdout


def test_env_example_does_not_turn_debug_on():
    lines = (settings.BASE_DIR / ".env.example").read_text().splitlines()
    assert not [line for line in lines if line.strip().startswith("DJANGO_DEBUG=") and "=1" in line]
