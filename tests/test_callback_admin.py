"""The admin pages an operator reads to learn what CloudAgent made of a batch and of each lead."""

from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone

from tests.fixtures.callbacks import callback_body, callback_data
from tests.fixtures.html import page_text
from uploads.models import CallbackEvent, UploadTransaction

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def change_url(upload_transaction: UploadTransaction) -> str:
    return reverse("admin:uploads_uploadtransaction_change", args=[upload_transaction.pk])


def download_url(upload_transaction: UploadTransaction) -> str:
    return reverse("admin:uploads_uploadtransaction_failed_file", args=[upload_transaction.pk])


def test_the_transaction_page_shows_request_callbacks_counts_and_leads(
    admin_client, post_callback, make_upload_transaction, account
):
    upload_transaction = make_upload_transaction(3, options={"checkDuplicate": False, "callBackUrl": "x"})
    UploadTransaction.objects.filter(pk=upload_transaction.pk).update(
        options={"callBackUrl": f"https://leadhub.example/cloudagent/callback/{account.callback_secret}/"},
        response={"transactionId": upload_transaction.transaction_id, "status": "success"},
    )
    body, content_type = callback_body(callback_data(upload_transaction.transaction_id, numbersNotProcessed="1"))
    post_callback(body, content_type)
    post_callback(body, content_type)

    page = admin_client.get(change_url(upload_transaction)).content.decode()

    assert account.callback_secret not in page
    assert "[secret]" in page and "queued successfully" not in page
    assert "Callbacks received" in page
    assert page.count("File Successfully uploaded.") >= 2  # the two raw callbacks and the applied data
    assert "the transaction is already completed: a duplicate or late callback" in page
    assert "did not process 1 of 3 rows" in page
    leads_link = f"?upload_transaction__id__exact={upload_transaction.pk}&amp;status=unconfirmed"
    assert leads_link in page and "unconfirmed (batch partly failed, rows not named): 3" in page_text(page)


def test_the_lead_changelist_link_shows_only_that_transactions_leads(admin_client, make_upload_transaction):
    mine, other = make_upload_transaction(2), make_upload_transaction(1)
    url = reverse("admin:campaigns_lead_changelist") + f"?upload_transaction__id__exact={mine.pk}"
    response = admin_client.get(url)
    assert response.status_code == 200
    shown = {lead.pk for lead in response.context["cl"].result_list}
    assert shown == set(mine.leads.values_list("pk", flat=True))
    assert not shown & set(other.leads.values_list("pk", flat=True))


def test_the_stored_failed_file_downloads_through_the_admin(admin_client, make_upload_transaction):
    upload_transaction = make_upload_transaction(1, state=UploadTransaction.State.COMPLETED)
    assert admin_client.get(download_url(upload_transaction)).status_code == 404
    upload_transaction.failed_file.save("123-failed.csv", ContentFile(b"PhoneNumber,Reason\n9800000001,DND\n"))
    page = admin_client.get(change_url(upload_transaction)).content.decode()
    assert "123-failed" in page
    response = admin_client.get(download_url(upload_transaction))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"PhoneNumber,Reason\n9800000001,DND\n"
    assert response["Content-Disposition"].startswith("attachment;")


def test_the_changelist_flags_overdue_and_attention(admin_client, make_upload_transaction, settings):
    settings.CLOUDAGENT_CALLBACK_OVERDUE_SECONDS = 60
    late = make_upload_transaction(1, sent_at=timezone.now() - timedelta(minutes=5))
    fresh = make_upload_transaction(1)
    flagged = make_upload_transaction(1, state=UploadTransaction.State.COMPLETED, attention="look")
    changelist = reverse("admin:uploads_uploadtransaction_changelist")

    def shown(query: str) -> set[int]:
        response = admin_client.get(changelist + query)
        assert response.status_code == 200
        return {row.pk for row in response.context["cl"].result_list}

    assert shown("?overdue=yes") == {late.pk}
    assert shown("?overdue=no") == {fresh.pk, flagged.pk}
    assert shown("?attention=yes") == {flagged.pk}
    assert 'alt="True"' in admin_client.get(changelist).content.decode()


def test_a_callback_page_shows_the_body_as_received_and_as_read(admin_client, post_callback):
    post_callback(*callback_body(callback_data("129171716445505819319510"), "form"))
    post_callback(b"{broken")
    waiting, invalid = CallbackEvent.objects.order_by("id")
    page = admin_client.get(reverse("admin:uploads_callbackevent_change", args=[waiting.pk])).content.decode()
    assert "data=%7B%22totalNoUploaded" in page and "&quot;transactionId&quot;: &quot;12917171644550581" in page
    page = admin_client.get(reverse("admin:uploads_callbackevent_change", args=[invalid.pk])).content.decode()
    assert "unreadable: the body is not valid JSON" in page
    assert admin_client.get(reverse("admin:uploads_callbackevent_changelist") + "?state=waiting").status_code == 200


def test_the_apply_action_applies_waiting_callbacks(admin_client, post_callback, make_upload_transaction):
    post_callback(*callback_body(callback_data("129171716445505819319510")))
    upload_transaction = make_upload_transaction(3, transaction_id="129171716445505819319510")
    event = CallbackEvent.objects.get()
    response = admin_client.post(
        reverse("admin:uploads_callbackevent_changelist"),
        {"action": "apply_callbacks", "_selected_action": [event.pk]},
        follow=True,
    )
    assert "Callbacks: 1 applied." in response.content.decode()
    upload_transaction.refresh_from_db()
    assert upload_transaction.state == UploadTransaction.State.COMPLETED
