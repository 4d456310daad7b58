"""The data model's rules, the scripting commands and the admin pages."""

import json
import os
import secrets
import subprocess
import sys
import threading
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign, CloudAgentAccount, Lead, LeadImport
from campaigns.normalize import PhoneError, clean_name, format_phone, normalize_phone
from tests.fixtures.html import element_text
from uploads.models import CallbackEvent, UploadTransaction

pytestmark = pytest.mark.django_db


def run_json(*args) -> dict:
    out = StringIO()
    call_command(*args, "--json", stdout=out)
    return json.loads(out.getvalue())


# --- the model's rules -------------------------------------------------------------------------


def test_campaign_name_is_unique_per_account_but_not_across_accounts(account):
    Campaign.objects.create(account=account, name="Sales")
    other = CloudAgentAccount.objects.create(name="Other", user_name="u2", api_key="k2")
    Campaign.objects.create(account=other, name="Sales")
    with pytest.raises(IntegrityError), transaction.atomic():
        Campaign.objects.create(account=account, name="Sales")


def test_a_phone_number_is_unique_within_a_campaign(campaign, account):
    Lead.objects.create(campaign=campaign, phone_number="+919876543210")
    second = Campaign.objects.create(account=account, name="Second")
    Lead.objects.create(campaign=second, phone_number="+919876543210")
    with pytest.raises(IntegrityError), transaction.atomic():
        Lead.objects.create(campaign=campaign, phone_number="+919876543210")


@pytest.mark.parametrize("priority", [0, 100])
def test_priority_outside_1_to_99_is_refused_by_the_database(campaign, priority):
    with pytest.raises(IntegrityError), transaction.atomic():
        Lead.objects.create(campaign=campaign, phone_number="+919876543210", priority=priority)


def test_an_unknown_status_is_refused_by_the_database(campaign):
    with pytest.raises(IntegrityError), transaction.atomic():
        Lead.objects.create(campaign=campaign, phone_number="+919876543210", status="done")


@pytest.mark.smoke
def test_status_vocabulary_is_the_documented_one():
    assert Lead.Status.values == ["new", "queued", "sent", "uploaded", "failed", "unconfirmed", "invalid"]
    assert UploadTransaction.State.values == ["pending", "sending", "queued", "completed", "failed", "error"]
    assert Lead._meta.get_field("status").default == "new"
    assert UploadTransaction._meta.get_field("state").default == "pending"


@pytest.mark.parametrize(
    "column_map, message",
    [
        (["Name", "Priority"], "must contain PhoneNumber"),
        (["PhoneNumber", "Name", "Name"], "names a header twice"),
        ("PhoneNumber", "list of header names"),
    ],
)
def test_campaign_column_map_is_validated(account, column_map, message):
    with pytest.raises(ValidationError, match=message):
        Campaign(account=account, name="X", column_map=column_map).full_clean()


def test_each_account_gets_its_own_unguessable_callback_secret(account):
    other = CloudAgentAccount.objects.create(name="Other", user_name="u2", api_key="k2")
    assert account.callback_secret != other.callback_secret
    assert len(account.callback_secret) >= 40


def test_masked_api_key_never_shows_the_key(account):
    assert account.api_key not in account.masked_api_key
    assert account.masked_api_key.startswith(account.api_key[:2])
    assert CloudAgentAccount(api_key="short").masked_api_key == "•••••"


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout():
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only")
    with connection.cursor() as cursor:
        assert cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert cursor.execute("PRAGMA busy_timeout").fetchone()[0] == 30000
    assert connection.transaction_mode == "IMMEDIATE"


# --- normalisation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "98765 43210",
        "+91 98765 43210",
        "098765-43210",
        "91-9876543210",
        "0091 9876543210",
        "(+91) 98765 43210",
        9876543210,
        "9876543210.0",
    ],
)
def test_common_ways_of_writing_one_indian_number_normalise_alike(raw):
    assert normalize_phone(raw, "IN") == "+919876543210"


@pytest.mark.parametrize("raw", ["", None, "12345", "abc", "+91 00000 00000", "+91 98765 4321"])
def test_invalid_numbers_are_refused_with_a_reason(raw):
    with pytest.raises(PhoneError):
        normalize_phone(raw, "IN")


def test_numbers_are_sent_in_the_campaigns_format():
    assert format_phone("+919876543210", "IN", "national") == "9876543210"
    assert format_phone("+919876543210", "IN", "country_code") == "919876543210"
    assert format_phone("+919876543210", "IN", "e164") == "+919876543210"
    assert format_phone("+14155552671", "IN", "national") == "14155552671"


def test_names_are_folded_to_what_cloudagent_accepts():
    assert clean_name("José Müller") == ("Jose Muller", True)
    assert clean_name("Ravi (VIP) - 50% off: $5 + tax.") == ("Ravi (VIP) - 50% off: $5 + tax.", False)
    assert clean_name("A&B <Co>;  Ltd") == ("AB Co Ltd", True)


# --- commands ----------------------------------------------------------------------------------


@pytest.mark.smoke
def test_add_account_and_add_campaign_are_idempotent():
    first = run_json("add_account", "Acme", "--user-name", "acme", "--api-key", "k1")
    again = run_json(
        "add_account", "Acme", "--user-name", "acme", "--api-key", "k2", "--base-url", "http://127.0.0.1:8900"
    )
    assert first["created"] is True and again["created"] is False and first["id"] == again["id"]
    account = CloudAgentAccount.objects.get()
    assert (account.api_key, account.base_url) == ("k2", "http://127.0.0.1:8900")

    made = run_json(
        "add_campaign", "Sales", "--account", "Acme", "--map", "PhoneNumber, Name,Priority", "--check-duplicate"
    )
    remade = run_json("add_campaign", "Sales", "--account", "Acme", "--map", "PhoneNumber,Name", "--start")
    assert made["created"] is True and remade["created"] is False and made["id"] == remade["id"]
    campaign = Campaign.objects.get()
    assert campaign.column_map == ["PhoneNumber", "Name"]
    assert (campaign.check_duplicate, campaign.start_after_upload) == (False, True)


def test_add_campaign_refuses_a_map_without_phone_and_an_unknown_account(account):
    with pytest.raises(CommandError, match="PhoneNumber"):
        call_command("add_campaign", "X", "--account", account.name, "--map", "Name")
    with pytest.raises(CommandError, match="No account"):
        call_command("add_campaign", "X", "--account", "nobody", "--map", "PhoneNumber")
    assert not Campaign.objects.exists()


def test_leadhub_status_counts_transactions_whose_callback_is_overdue(campaign, settings):
    now = timezone.now()
    UploadTransaction.objects.create(campaign=campaign, state="queued", sent_at=now - timedelta(hours=2))
    UploadTransaction.objects.create(campaign=campaign, state="queued", sent_at=now - timedelta(minutes=5))
    UploadTransaction.objects.create(campaign=campaign, state="completed", sent_at=now - timedelta(hours=2))
    settings.CLOUDAGENT_CALLBACK_OVERDUE_SECONDS = 3600
    assert run_json("leadhub_status")["overdue"] == 1


def test_leadhub_status_prints_the_overdue_count_without_json(campaign, make_leads, settings):
    make_leads(2)
    UploadTransaction.objects.create(campaign=campaign, state="queued", sent_at=timezone.now() - timedelta(hours=2))
    settings.CLOUDAGENT_CALLBACK_OVERDUE_SECONDS = 3600
    out = StringIO()

    call_command("leadhub_status", stdout=out)

    lines = out.getvalue().splitlines()
    assert ["new", "2"] in [line.split() for line in lines]
    assert ["queued", "1"] in [line.split() for line in lines]  # the transaction; no lead is queued
    assert lines[-1].split() == ["overdue", "callbacks", "1"]


def test_add_account_with_a_new_api_key_clears_the_accounts_problem_flag(account):
    CloudAgentAccount.objects.filter(pk=account.pk).update(problem="Invalid userName or apiKey")
    same = ["add_account", account.name, "--user-name", account.user_name, "--base-url", account.base_url]

    call_command(*same, "--api-key", account.api_key, stdout=StringIO())
    account.refresh_from_db()
    assert account.problem == "Invalid userName or apiKey", "the same key fixes nothing"

    call_command(*same, "--api-key", "a-new-key", stdout=StringIO())
    account.refresh_from_db()
    assert (account.problem, account.api_key) == ("", "a-new-key")


def test_add_campaign_with_a_new_column_map_clears_the_campaigns_problem_flag(campaign):
    Campaign.objects.filter(pk=campaign.pk).update(problem="Invalid Campaign Name")
    command = ["add_campaign", campaign.name, "--account", campaign.account.name]

    call_command(*command, "--map", ",".join(campaign.column_map), stdout=StringIO())
    campaign.refresh_from_db()
    assert campaign.problem == "Invalid Campaign Name", "the same map fixes nothing"

    call_command(*command, "--map", "PhoneNumber,Name,Priority", stdout=StringIO())
    campaign.refresh_from_db()
    assert campaign.problem == ""


@pytest.mark.smoke
def test_leadhub_status_json_has_every_status_and_state(campaign, make_leads, account):
    make_leads(3)
    make_leads(2, start=10, status=Lead.Status.FAILED)
    other = Campaign.objects.create(account=account, name="Other")
    Lead.objects.create(campaign=other, phone_number="+919999999999")
    UploadTransaction.objects.create(campaign=campaign, state=UploadTransaction.State.QUEUED)

    everything = run_json("leadhub_status")
    assert set(everything["leads"]) == set(Lead.Status.values)
    assert set(everything["transactions"]) == set(UploadTransaction.State.values)
    assert everything["leads"]["new"] == 4 and everything["leads"]["failed"] == 2
    assert everything["transactions"]["queued"] == 1 and everything["transactions"]["pending"] == 0

    assert everything["overdue"] == 0
    one = run_json("leadhub_status", "--campaign", "Other")
    assert one["leads"]["new"] == 1 and one["leads"]["failed"] == 0 and one["transactions"]["queued"] == 0


# --- admin -------------------------------------------------------------------------------------


@pytest.mark.smoke
def test_admin_pages_render_and_say_leadhub(admin_client, campaign, make_leads):
    make_leads(3)
    tx = UploadTransaction.objects.create(campaign=campaign)
    lead_import = LeadImport.objects.create(campaign=campaign, file_name="leads.csv")
    event = CallbackEvent.objects.create(body="{}")
    lead = Lead.objects.first()
    for model, obj in [
        (CloudAgentAccount, campaign.account),
        (Campaign, campaign),
        (Lead, lead),
        (UploadTransaction, tx),
        (LeadImport, lead_import),
        (CallbackEvent, event),
    ]:
        opts = model._meta
        changelist = admin_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
        assert changelist.status_code == 200, opts.model_name
        change = admin_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk]))
        assert change.status_code == 200, opts.model_name
    index = admin_client.get(reverse("admin:index"))
    assert b"leadhub" in index.content and b"Django administration" not in index.content


def test_admin_never_shows_the_api_key(admin_client, account):
    for url in [
        reverse("admin:campaigns_cloudagentaccount_changelist"),
        reverse("admin:campaigns_cloudagentaccount_change", args=[account.pk]),
    ]:
        page = admin_client.get(url).content.decode()
        assert account.api_key not in page
        assert account.masked_api_key in page


def test_admin_keeps_the_key_when_the_field_is_left_empty(admin_client, account):
    url = reverse("admin:campaigns_cloudagentaccount_change", args=[account.pk])
    data = {
        "name": "Renamed",
        "user_name": account.user_name,
        "api_key": "",
        "base_url": account.base_url,
        "is_active": "on",
    }
    assert admin_client.post(url, data).status_code == 302
    account.refresh_from_db()
    assert (account.name, account.api_key) == ("Renamed", "demo-api-key-0123456789")


def test_lead_search_matches_any_written_form_of_the_number(admin_client, campaign, make_leads):
    make_leads(5)
    target = Lead.objects.order_by("id")[2]
    national = target.phone_number[3:]
    page = admin_client.get(reverse("admin:campaigns_lead_changelist"), {"q": f"0{national[:5]}-{national[5:]}"})
    assert page.status_code == 200
    assert list(page.context["cl"].queryset) == [target]


def test_lead_list_filters_by_the_most_common_reasons(admin_client, campaign, make_leads):
    make_leads(3, status=Lead.Status.FAILED, status_reason="PhoneNumber Added is a DND Number")
    make_leads(1, start=10, status=Lead.Status.INVALID, status_reason="Name contains characters CloudAgent refuses")
    make_leads(2, start=20)
    url = reverse("admin:campaigns_lead_changelist")
    page = admin_client.get(url)
    assert "PhoneNumber Added is a DND Number" in page.content.decode()
    filtered = admin_client.get(url, {"reason": "PhoneNumber Added is a DND Number"})
    assert filtered.context["cl"].result_count == 3


def test_production_settings_pass_the_deployment_checklist(tmp_path):
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "leadhub.settings",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "LEADHUB_FIELD_ENCRYPTION_KEYS": "dGVzdC1vbmx5LWZpZWxkLWVuY3J5cHRpb24ta2V5LTA=",
        "ALLOWED_HOSTS": "leadhub.example.com",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'deploy.sqlite3'}",
        "SECURE_SSL_REDIRECT": "1",
        "SECURE_HSTS_SECONDS": "31536000",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
        "SECURE_HSTS_PRELOAD": "1",
    }
    checked = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stderr


def test_production_settings_refuse_to_start_without_a_secret_key(tmp_path):
    env = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "leadhub.settings"}
    checked = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=settings.BASE_DIR, env=env, capture_output=True, text=True
    )
    assert checked.returncode != 0 and "SECRET_KEY is required" in checked.stderr


@pytest.mark.django_db(transaction=True)
def test_sqlite_takes_concurrent_writers_without_database_is_locked(campaign, make_leads):
    """Web and workers write at once; a read-then-write transaction must wait its turn, never fail."""
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only")
    lead_ids = [lead.pk for lead in make_leads(4)]
    errors: list[Exception] = []

    def writer(lead_id: int) -> None:
        try:
            for n in range(40):
                with transaction.atomic():
                    lead = Lead.objects.get(pk=lead_id)  # read first: the pattern that deadlocks DEFERRED
                    Lead.objects.filter(pk=lead.pk).update(name=f"round {n}")
                    Campaign.objects.filter(pk=campaign.pk).update(problem=f"{lead_id}-{n}")
        except Exception as exc:  # collected for the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(lead_id,)) for lead_id in lead_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert set(Lead.objects.values_list("name", flat=True)) == {"round 39"}


def test_seed_demo_is_idempotent_and_leaves_a_login_leads_and_sample_files(client, settings, tmp_path):
    settings.BASE_DIR = tmp_path
    out = StringIO()
    call_command("seed_demo", "--leads", "50", stdout=out)
    call_command("seed_demo", "--leads", "50", stdout=StringIO())
    seeded = json.loads(out.getvalue())

    assert Lead.objects.count() == 50 and Campaign.objects.count() == 2
    assert client.login(request=RequestFactory().post("/admin/login/"), username="admin", password="leadhub-demo")
    sample = Path(seeded["sample_file"]).read_text()
    assert sample.splitlines()[0] == "Mobile No,Customer Name,priority,Expiry,City"
    dnd = Path(seeded["dnd_file"]).read_text().split()
    assert dnd and all(Lead.objects.filter(phone_number=f"+91{number}").exists() for number in dnd)


def test_new_credentials_clear_the_accounts_problem_flag_and_an_unchanged_key_does_not(admin_client, account):
    CloudAgentAccount.objects.filter(pk=account.pk).update(problem="Invalid userName or apiKey")
    url = reverse("admin:campaigns_cloudagentaccount_change", args=[account.pk])
    form = {"name": account.name, "user_name": account.user_name, "base_url": account.base_url, "is_active": "on"}

    admin_client.post(url, {**form, "api_key": ""})
    account.refresh_from_db()
    assert account.problem == "Invalid userName or apiKey", "saving without a new key fixes nothing"

    admin_client.post(url, {**form, "api_key": "a-new-key"})
    account.refresh_from_db()
    assert (account.problem, account.api_key) == ("", "a-new-key")


def test_a_new_column_map_clears_the_campaigns_problem_flag(admin_client, campaign):
    Campaign.objects.filter(pk=campaign.pk).update(problem="Invalid Campaign Name")
    url = reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    page = admin_client.get(url)
    form = {k: v for k, v in page.context["adminform"].form.initial.items() if v not in (None, False)}
    form.update({"account": campaign.account_id, "name": "Renamed", "column_map": '["PhoneNumber", "Name"]'})
    form.update({"is_active": "on", "phone_region": "IN", "phone_format": "national"})

    response = admin_client.post(url, form)

    assert response.status_code == 302, response.context["adminform"].form.errors
    campaign.refresh_from_db()
    assert (campaign.name, campaign.problem) == ("Renamed", "")


def test_the_admin_front_page_is_a_dashboard(admin_client, campaign, make_leads, account):
    make_leads(4)
    make_leads(2, start=10, status=Lead.Status.FAILED, status_reason="PhoneNumber Added is a DND Number")
    CloudAgentAccount.objects.filter(pk=account.pk).update(problem="Invalid userName or apiKey")
    UploadTransaction.objects.create(campaign=campaign, state="completed", attention="4 rows not processed")

    page = admin_client.get(reverse("admin:index"))

    dashboard = page.context["dashboard"]
    assert (dashboard["lead_total"], dashboard["leads"]["new"], dashboard["leads"]["failed"]) == (6, 4, 2)
    assert dashboard["needs_attention"] == 1
    html = page.content.decode()
    assert "CloudAgent refused account" in html and "Invalid userName or apiKey" in html
    assert element_text(html, "dashboard-lead-failed") == "2"
    assert "Campaigns and leads" in html, "the app list is still there"


def test_healthz_answers_for_the_database_and_redis(admin_client, settings):
    client = admin_client  # the reasons are shown to a user who may view transactions
    healthy = client.get(reverse("healthz"))
    assert healthy.status_code == 200
    assert {key: healthy.json()[key] for key in ("database", "redis", "dispatch")} == {
        "database": "ok",
        "redis": "ok",
        "dispatch": "ok",
    }

    settings.REDIS_URL = "redis://127.0.0.1:9/0"  # nothing listens on the discard port
    broken = client.get(reverse("healthz"))
    assert broken.status_code == 503
    assert (broken.json()["database"], broken.json()["redis"]) == ("ok", "error: ConnectionError")
    assert "Redis unreachable" in " ".join(broken.json()["dispatch_detail"]["stalled"])
