"""Issue 11, finding 4 (a base-URL change sent the hidden API key to any host) and the `add_account --api-key`
finding (the key on the command line): both the service and the admin form hold the rule."""

import io
import sys

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.urls import reverse

from campaigns.models import CloudAgentAccount
from campaigns.services import account_upsert

pytestmark = pytest.mark.django_db

KEY = "ca-live-0123456789abcdef-secret"


@pytest.fixture
def https_only(settings):
    settings.LEADHUB_ALLOW_PLAIN_HTTP = False


@pytest.fixture
def acme(db):
    return CloudAgentAccount.objects.create(
        name="Acme", user_name="acme", api_key=KEY, base_url="https://in1-ccaas-api.ozonetel.com"
    )


def test_the_service_wants_the_key_again_to_change_the_base_url(acme):
    with pytest.raises(ValidationError, match="Type the API key again"):
        account_upsert(name="Acme", user_name="acme", api_key="", base_url="https://attacker.example")
    acme.refresh_from_db()
    assert acme.base_url == "https://in1-ccaas-api.ozonetel.com"

    account_upsert(name="Acme", user_name="acme", api_key="new-key", base_url="https://partner.example")
    acme.refresh_from_db()
    assert (acme.base_url, acme.api_key) == ("https://partner.example", "new-key")


def test_the_service_refuses_plain_http_outside_debug(https_only, acme):
    with pytest.raises(ValidationError, match="must be an https URL"):
        account_upsert(name="Acme", user_name="acme", api_key=KEY, base_url="http://partner.example")
    with pytest.raises(ValidationError, match="must be an https URL"):
        account_upsert(name="New", user_name="new", api_key=KEY, base_url="http://partner.example")


def change_account(client, account, **fields):
    data = {"name": account.name, "user_name": account.user_name, "api_key": "", "base_url": account.base_url}
    data.update(fields)
    data["is_active"] = "on"
    return client.post(reverse("admin:campaigns_cloudagentaccount_change", args=[account.pk]), data)


def test_the_admin_form_wants_the_key_again_to_change_the_base_url(admin_client, acme):
    page = change_account(admin_client, acme, base_url="https://attacker.example")
    assert page.status_code == 200 and "Type the API key again" in page.content.decode()
    acme.refresh_from_db()
    assert acme.base_url == "https://in1-ccaas-api.ozonetel.com"

    page = change_account(admin_client, acme, base_url="https://partner.example", api_key="typed-again")
    assert page.status_code == 302
    acme.refresh_from_db()
    assert (acme.base_url, acme.api_key) == ("https://partner.example", "typed-again")

    page = change_account(admin_client, acme, name="Acme renamed")  # other edits keep the key without it
    assert page.status_code == 302
    acme.refresh_from_db()
    assert acme.api_key == "typed-again"


def test_the_admin_form_refuses_plain_http_outside_debug(https_only, admin_client, acme):
    page = change_account(admin_client, acme, base_url="http://partner.example", api_key=KEY)
    assert page.status_code == 200 and "must be an https URL" in page.content.decode()


def run_add_account(*args, stdin: str = "", monkeypatch=None) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    if monkeypatch is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    call_command("add_account", "Acme", "--user-name", "acme", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_add_account_reads_the_key_from_stdin(monkeypatch):
    _out, err = run_add_account("--api-key", "-", stdin=KEY + "\n", monkeypatch=monkeypatch)
    assert CloudAgentAccount.objects.get(name="Acme").api_key == KEY
    assert err == ""


def test_add_account_reads_the_key_from_the_environment(monkeypatch):
    monkeypatch.setenv("CLOUDAGENT_API_KEY", KEY)
    _out, err = run_add_account()
    assert CloudAgentAccount.objects.get(name="Acme").api_key == KEY
    assert err == ""


def test_add_account_still_takes_the_key_as_an_argument_with_a_warning():
    out, err = run_add_account("--api-key", KEY)
    assert CloudAgentAccount.objects.get(name="Acme").api_key == KEY
    assert "visible to other users" in err
    assert KEY not in out and KEY not in err
