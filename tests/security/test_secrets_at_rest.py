"""Issue 11, secrets at rest and finding 4: API keys are Fernet tokens in the database, keys rotate, the
production settings have no default key, and the key appears nowhere a person or a log could read it."""

import io
import os
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse

from campaigns.models import CloudAgentAccount
from leadhub.fields import SecretDecryptionError

pytestmark = pytest.mark.django_db

KEY = "ca-live-0123456789abcdef-secret"


def stored_api_key(account_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key FROM campaigns_cloudagentaccount WHERE id = %s", [account_id])
        return cursor.fetchone()[0]


def test_the_database_holds_a_token_never_the_key():
    account = CloudAgentAccount.objects.create(name="Acme", user_name="acme", api_key=KEY)
    stored = stored_api_key(account.pk)
    assert KEY not in stored and stored.startswith("gAAAAA")
    assert CloudAgentAccount.objects.get(pk=account.pk).api_key == KEY


def test_keys_rotate_new_first_then_reencrypt_then_drop_the_old(settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.LEADHUB_FIELD_ENCRYPTION_KEYS = [old]
    account = CloudAgentAccount.objects.create(name="Acme", user_name="acme", api_key=KEY)

    settings.LEADHUB_FIELD_ENCRYPTION_KEYS = [new, old]
    assert CloudAgentAccount.objects.get(pk=account.pk).api_key == KEY, "the old key still reads"
    settings.LEADHUB_FIELD_ENCRYPTION_KEYS = [new]
    with pytest.raises(SecretDecryptionError) as raised:
        CloudAgentAccount.objects.get(pk=account.pk)
    assert KEY not in str(raised.value)

    settings.LEADHUB_FIELD_ENCRYPTION_KEYS = [new, old]
    out = io.StringIO()
    call_command("reencrypt_secrets", stdout=out)
    assert "1 account" in out.getvalue()
    settings.LEADHUB_FIELD_ENCRYPTION_KEYS = [new]
    assert CloudAgentAccount.objects.get(pk=account.pk).api_key == KEY


@pytest.mark.django_db(transaction=True)
def test_the_migration_encrypts_existing_keys_and_reverses():
    executor = MigrationExecutor(connection)
    executor.migrate([("campaigns", "0002_initial")])
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO campaigns_cloudagentaccount (name, user_name, api_key, base_url, callback_secret, is_active,"
            " problem, created_at, updated_at) VALUES ('Old', 'old', %s, 'https://x.example', 'cbsecret', %s, '',"
            " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            [KEY, True],
        )
        cursor.execute("SELECT id FROM campaigns_cloudagentaccount WHERE name = 'Old'")
        account_id = cursor.fetchone()[0]
    try:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
        assert stored_api_key(account_id).startswith("gAAAAA")
        assert CloudAgentAccount.objects.get(pk=account_id).api_key == KEY
    finally:
        CloudAgentAccount.objects.filter(pk=account_id).delete()


def test_production_settings_have_no_default_encryption_key(tmp_path):
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "leadhub.settings",
        "SECRET_KEY": "x" * 60,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}",
    }
    checked = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=settings.BASE_DIR, env=env, capture_output=True, text=True
    )
    assert checked.returncode != 0 and "LEADHUB_FIELD_ENCRYPTION_KEYS is required" in checked.stderr


def test_the_key_appears_in_no_repr_page_or_error(admin_client):
    account = CloudAgentAccount.objects.create(name="Acme", user_name="acme", api_key=KEY)
    assert KEY not in repr(account) and KEY not in str(account)
    for url in (
        reverse("admin:campaigns_cloudagentaccount_changelist"),
        reverse("admin:campaigns_cloudagentaccount_change", args=[account.pk]),
    ):
        page = admin_client.get(url)
        assert page.status_code == 200 and KEY not in page.content.decode()
    settings_keys = settings.LEADHUB_FIELD_ENCRYPTION_KEYS
    assert not any(key in admin_client.get(reverse("admin:index")).content.decode() for key in settings_keys)
