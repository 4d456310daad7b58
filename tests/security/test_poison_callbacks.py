"""Issue 11, finding 6 (poison callbacks) and the fail-open account check: a body nested deep enough to raise
RecursionError, and a year-1 timestamp PostgreSQL stores as 1 BC, must be a 400 / a null, never a callback stuck
`received`, a sweep that fails every tick or an admin page that answers 500."""

import json

import pytest
from django.urls import reverse

from campaigns.models import Lead
from tests.fixtures.callbacks import callback_data, lead_statuses
from uploads.callbacks import callback_event_receive, callback_events_sweep
from uploads.models import CallbackEvent, UploadTransaction
from uploads.services import callback_event_apply

pytestmark = pytest.mark.django_db


def quirk_nested(data: dict, times: int) -> bytes:
    """The provider's unescaped-JSON-in-a-string shape, {"data":"{...}"}, wrapped `times` times."""
    text = json.dumps(data)
    for _ in range(times):
        text = '{"data":"' + text + '"}'
    return text.encode()


def data_nested(data: dict, times: int) -> bytes:
    for _ in range(times):
        data = {"data": data}
    return json.dumps({"data": data}).encode()


@pytest.mark.parametrize(
    "build", [lambda d: quirk_nested(d, 1200), lambda d: data_nested(d, 900)], ids=["quirk-x1200", "data-x900"]
)
def test_a_deeply_nested_body_is_a_400_and_stored_invalid(post_callback, make_upload_transaction, admin_client, build):
    upload_transaction = make_upload_transaction(3)
    body = build(callback_data(upload_transaction.transaction_id))

    answer = post_callback(body)

    assert answer.status_code == 400
    event = CallbackEvent.objects.get()
    assert event.state == CallbackEvent.State.INVALID and "nest" in event.error
    assert callback_events_sweep().get("errors", 0) == 0
    page = admin_client.get(reverse("admin:uploads_callbackevent_change", args=[event.pk]))
    assert page.status_code == 200
    assert set(lead_statuses(upload_transaction).values()) == {Lead.Status.SENT}


def test_a_year_one_timestamp_is_not_stored_and_no_changelist_breaks(
    post_callback, make_upload_transaction, admin_client
):
    upload_transaction = make_upload_transaction(3)
    data = callback_data(
        upload_transaction.transaction_id, startDateTime="0001-01-01 00:00:00", endDateTime="9999-12-31 23:59:59"
    )

    answer = post_callback(json.dumps({"data": data}).encode())

    assert answer.status_code == 200
    upload_transaction.refresh_from_db()
    assert upload_transaction.state == UploadTransaction.State.COMPLETED
    assert upload_transaction.provider_started_at is None and upload_transaction.provider_finished_at is None
    for name in ("campaigns_lead", "uploads_uploadtransaction", "uploads_callbackevent"):
        assert admin_client.get(reverse(f"admin:{name}_changelist")).status_code == 200
    assert (
        admin_client.get(reverse("admin:uploads_uploadtransaction_change", args=[upload_transaction.pk])).status_code
        == 200
    )


def test_an_event_with_no_account_is_never_applied(make_upload_transaction):
    """The account check fails closed: an event whose account is unknown cannot settle anyone's transaction."""
    upload_transaction = make_upload_transaction(3)
    body = json.dumps({"data": callback_data(upload_transaction.transaction_id)}).encode()
    event = callback_event_receive(account=None, body=body, content_type="application/json", remote_addr=None)

    event = callback_event_apply(event=event)

    assert event.state == CallbackEvent.State.IGNORED
    upload_transaction.refresh_from_db()
    assert upload_transaction.state == UploadTransaction.State.QUEUED
    assert set(lead_statuses(upload_transaction).values()) == {Lead.Status.SENT}
