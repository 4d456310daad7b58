"""End to end through the real emulator: rows sent with the real client, CloudAgent's answer posted by the
emulator over HTTP to our live server, the failed file fetched by the real job from the emulator's pre-signed
link. The transaction and its `sent` leads are recorded here as the push records them."""

import pytest
from django.utils import timezone

from campaigns.models import Lead
from cloudagent.client import CloudAgentClient
from cloudagent.rules import build_rows
from tests.fixtures.callbacks import lead_statuses
from uploads.models import CallbackEvent, UploadTransaction
from uploads.services import callback_events_apply_waiting, callback_url_for, lead_values

pytestmark = pytest.mark.django_db(transaction=True)

DND_REASON = "PhoneNumber Added is a DND Number"


@pytest.fixture
def provider(settings, live_server, emulator, account, callbacks_queue, tmp_path):
    """The emulator as the account's CloudAgent, calling back to the live server. Requests wait in its queue
    until process_now(), so each test decides whether the answer comes before or after the transactionId."""
    settings.LEADHUB_PUBLIC_URL = live_server.url
    settings.MEDIA_ROOT = tmp_path
    account.base_url = emulator.url
    account.save()
    emulator.configure(process_delay=3600)
    return emulator


def push(campaign, leads: list[Lead], *, column_map: list[str] | None = None) -> UploadTransaction:
    """What the push does for one batch: send the rows, record the transactionId and the leads as sent, then
    apply any callback that beat the answer here."""
    column_map = column_map or campaign.column_map
    built = build_rows(column_map, ((lead.pk, lead_values(lead, campaign)) for lead in leads))
    with CloudAgentClient.for_account(campaign.account) as client:
        result = client.add_bulk_data(
            campaign_name=campaign.name,
            column_map=column_map,
            rows=built.rows,
            callback_url=callback_url_for(campaign.account),
        )
    upload_transaction = UploadTransaction.objects.create(
        campaign=campaign,
        state=UploadTransaction.State.QUEUED,
        transaction_id=result.transaction_id,
        row_count=len(built.rows),
        response=result.raw,
        sent_at=timezone.now(),
    )
    Lead.objects.filter(pk__in=built.keys).update(status=Lead.Status.SENT, upload_transaction=upload_transaction)
    callback_events_apply_waiting(upload_transaction=upload_transaction)
    return upload_transaction


@pytest.mark.parametrize(
    "shape, padding",
    [("json-object", False), ("json-string", True), ("form", False), ("json-string-unescaped", False)],
)
def test_every_callback_shape_uploads_the_leads(provider, campaign, make_leads, shape, padding):
    provider.configure(callback_shape=shape, callback_padding=padding)
    upload_transaction = push(campaign, make_leads(4, status=Lead.Status.QUEUED))
    provider.process_now()
    event = CallbackEvent.objects.get()
    assert (event.state, event.error) == (CallbackEvent.State.APPLIED, "")
    upload_transaction.refresh_from_db()
    assert upload_transaction.state == UploadTransaction.State.COMPLETED
    assert (upload_transaction.total_uploaded, upload_transaction.numbers_not_processed) == (4, 0)
    assert set(lead_statuses(upload_transaction).values()) == {Lead.Status.UPLOADED}
    assert provider.inspect("callbacks")["callbacks"][0]["tries"][-1]["status"] == 200


@pytest.mark.parametrize("file_format", ["csv", "xlsx"])
def test_a_partial_failure_names_the_failed_leads_through_the_failed_file(
    provider, campaign, make_leads, run_callbacks_jobs, file_format
):
    leads = make_leads(5, status=Lead.Status.QUEUED)
    dnd = [leads[1].phone_number, leads[4].phone_number]
    provider.configure(dnd=dnd, failed_file_format=file_format)
    upload_transaction = push(campaign, leads)
    provider.process_now()
    upload_transaction.refresh_from_db()
    assert upload_transaction.failed_file_url.startswith(provider.url + "/files/")
    assert set(lead_statuses(upload_transaction).values()) == {Lead.Status.SENT}

    run_callbacks_jobs()

    upload_transaction.refresh_from_db()
    assert upload_transaction.failed_file.name.endswith(f"-failed.{file_format}")
    assert upload_transaction.attention == ""
    outcome = dict(upload_transaction.leads.values_list("phone_number", "status_reason"))
    assert {phone for phone, reason in outcome.items() if reason} == set(dnd)
    assert {outcome[phone] for phone in dnd} == {DND_REASON}
    statuses = lead_statuses(upload_transaction)
    assert sorted(statuses.values()) == ["failed", "failed", "uploaded", "uploaded", "uploaded"]


def test_a_partial_failure_without_a_failed_file_leaves_the_leads_unconfirmed(provider, campaign, make_leads):
    leads = make_leads(3, status=Lead.Status.QUEUED)
    provider.configure(dnd=[leads[0].phone_number], empty_failed_path_on_partial=True)
    upload_transaction = push(campaign, leads)
    provider.process_now()
    upload_transaction.refresh_from_db()
    assert "did not process 1 of 3" in upload_transaction.attention
    assert set(lead_statuses(upload_transaction).values()) == {Lead.Status.UNCONFIRMED}


def test_an_expired_failed_file_leaves_the_leads_unconfirmed(provider, campaign, make_leads, run_callbacks_jobs):
    leads = make_leads(3, status=Lead.Status.QUEUED)
    provider.configure(dnd=[leads[0].phone_number], failed_file_ttl=0)
    upload_transaction = push(campaign, leads)
    provider.process_now()
    run_callbacks_jobs()
    upload_transaction.refresh_from_db()
    assert "HTTP 403 (expired or refused)" in upload_transaction.attention
    assert set(lead_statuses(upload_transaction).values()) == {Lead.Status.UNCONFIRMED}


def test_a_fail_fails_every_lead(provider, campaign, make_leads):
    upload_transaction = push(campaign, make_leads(2, status=Lead.Status.QUEUED), column_map=["PhoneNumber", "Name"])
    provider.process_now()
    upload_transaction.refresh_from_db()
    assert upload_transaction.state == UploadTransaction.State.FAILED
    reasons = set(upload_transaction.leads.values_list("status", "status_reason"))
    assert reasons == {(Lead.Status.FAILED, "CloudAgent refused the batch: File Failed to Upload.")}


def test_duplicate_callbacks_before_the_answer_wait_then_apply_once(provider, campaign, make_leads):
    provider.configure(callback_before_response=True, duplicate_callbacks=2, callback_shape="form")
    upload_transaction = push(campaign, make_leads(3, status=Lead.Status.QUEUED))
    states = list(CallbackEvent.objects.order_by("id").values_list("state", flat=True))
    assert states == [CallbackEvent.State.APPLIED, CallbackEvent.State.IGNORED]
    upload_transaction.refresh_from_db()
    assert upload_transaction.state == UploadTransaction.State.COMPLETED
    assert set(lead_statuses(upload_transaction).values()) == {Lead.Status.UPLOADED}
