"""The whole path through real parts: leads pushed by the admin action, sent by the paced dispatcher to the
emulator over HTTP, answered by the emulator's callback to our live server, the failed file fetched by the
callbacks job — and every lead ends in the status that says whether it reached the dialer and, if not, why."""

import pytest
from django.urls import reverse

from campaigns.models import Lead
from tests.fixtures.push import dispatch
from uploads.models import CallbackEvent, UploadTransaction
from uploads.services import leads_push

pytestmark = pytest.mark.django_db(transaction=True)

DND_REASON = "PhoneNumber Added is a DND Number"


@pytest.fixture
def live_push(settings, live_server, push_account, push_emulator, callbacks_queue, tmp_path):
    settings.LEADHUB_PUBLIC_URL = live_server.url
    settings.MEDIA_ROOT = tmp_path
    settings.CLOUDAGENT_BATCH_SIZE = 4
    return push_emulator


def push_from_admin(admin_client, campaign) -> str:
    page = admin_client.post(
        reverse("admin:campaigns_lead_changelist"),
        {
            "action": "push_selected_leads",
            "_selected_action": list(Lead.objects.filter(campaign=campaign).values_list("pk", flat=True)),
        },
        follow=True,
    )
    return " ".join(str(message) for message in page.context["messages"])


@pytest.mark.smoke
@pytest.mark.parametrize("shape", ["json-object", "json-string", "form"])
def test_push_callback_and_statuses_for_every_callback_shape(
    admin_client, live_push, push_account, campaign, make_leads, run_callbacks_jobs, shape
):
    live_push.configure(callback_shape=shape, callback_padding=shape == "json-string")
    leads = make_leads(10)
    dnd = [leads[2].phone_number[3:], leads[7].phone_number[3:]]
    live_push.configure(dnd=dnd)

    message = push_from_admin(admin_client, campaign)
    assert "Queued 10 lead(s) in 3 batch(es)" in message

    dispatch(account_id=push_account.pk)
    live_push.process_now()
    run_callbacks_jobs()

    batches = UploadTransaction.objects.order_by("pk")
    assert [b.state for b in batches] == [UploadTransaction.State.COMPLETED] * 3
    assert set(CallbackEvent.objects.values_list("state", flat=True)) == {CallbackEvent.State.APPLIED}
    statuses = dict(Lead.objects.values_list("phone_number", "status"))
    reasons = dict(Lead.objects.values_list("phone_number", "status_reason"))
    failed = {phone for phone, status in statuses.items() if status == Lead.Status.FAILED}
    assert failed == {f"+91{n}" for n in dnd}
    assert {reasons[phone] for phone in failed} == {DND_REASON}
    assert sum(status == Lead.Status.UPLOADED for status in statuses.values()) == 8
    assert all(tries["status"] == 200 for cb in live_push.inspect("callbacks")["callbacks"] for tries in cb["tries"])


def test_a_callback_that_beats_the_synchronous_answer_is_applied_once_the_batch_is_recorded(
    live_push, push_account, campaign, make_leads
):
    live_push.configure(callback_before_response=True, duplicate_callbacks=2)
    make_leads(3)
    leads_push(leads=Lead.objects.filter(campaign=campaign))
    dispatch(account_id=push_account.pk)
    live_push.process_now()

    batch = UploadTransaction.objects.get()
    assert batch.state == UploadTransaction.State.COMPLETED
    assert set(Lead.objects.values_list("status", flat=True)) == {Lead.Status.UPLOADED}
    states = sorted(CallbackEvent.objects.values_list("state", flat=True))
    assert states.count(CallbackEvent.State.APPLIED) == 1, states


def test_a_batch_resent_after_a_lost_answer_ends_uploaded_not_failed_as_duplicates(
    live_push, push_account, campaign, make_leads, run_callbacks_jobs
):
    """CloudAgent queued the first attempt but the answer was lost; the re-send (checkDuplicate=true) finds
    every number already there. Those leads are in the dialer: `uploaded`, not `failed`."""
    make_leads(4)
    leads_push(leads=Lead.objects.filter(campaign=campaign))
    live_push.force_fault("drop", 1)

    dispatch(account_id=push_account.pk)
    live_push.process_now()
    run_callbacks_jobs()

    batch = UploadTransaction.objects.get()
    assert (batch.state, batch.ambiguous_attempts) == (UploadTransaction.State.COMPLETED, 1)
    assert batch.numbers_not_processed == 4, "CloudAgent skipped every row of the re-send as a duplicate"
    assert set(Lead.objects.values_list("status", flat=True)) == {Lead.Status.UPLOADED}
    assert "earlier attempt" in Lead.objects.first().status_reason
    phones = [lead["PhoneNumber"] for lead in live_push.inspect("leads")["leads"]["Demo_Outbound"]]
    assert len(phones) == len(set(phones)) == 4
