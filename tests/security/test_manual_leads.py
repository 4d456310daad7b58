"""Issue 11, finding 8: leads entered by hand skipped phone normalisation and the duplicate check, so a failed
file naming `98765 43210` matched no lead and the lead stayed `uploaded`. Hand-made leads are normalised and
checked like imported ones, and rows of a failed file matching no open lead leave the unnamed leads
`unconfirmed`: one of them may be the row written differently."""

import pytest
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Lead
from tests.fixtures.callbacks import lead_statuses
from uploads.models import UploadTransaction
from uploads.services import failed_file_fetch

pytestmark = pytest.mark.django_db

ADD = reverse("admin:campaigns_lead_add")


def add_lead(client, campaign, phone: str):
    data = {"campaign": campaign.pk, "phone_number": phone, "name": "Asha", "extra": "{}"}
    for inline in client.get(ADD).context["inline_admin_formsets"]:  # the lead page's inlines (its calls)
        management = inline.formset.management_form
        data.update({management.add_prefix(name): value for name, value in management.initial.items()})
    return client.post(ADD, data)


def test_a_lead_entered_by_hand_is_normalised(admin_client, campaign):
    answer = add_lead(admin_client, campaign, "98765 43210")
    assert answer.status_code == 302, answer.content.decode()[:2000]
    assert list(Lead.objects.values_list("phone_number", flat=True)) == ["+919876543210"]


@pytest.mark.parametrize("phone", ["+919876543210", "098765-43210"])
def test_a_duplicate_entered_by_hand_is_refused(admin_client, campaign, make_leads, phone):
    Lead.objects.create(campaign=campaign, phone_number="+919876543210")
    answer = add_lead(admin_client, campaign, phone)
    assert answer.status_code == 200 and "already in this campaign" in answer.content.decode()
    assert Lead.objects.count() == 1


def test_a_number_that_is_not_one_is_refused(admin_client, campaign):
    answer = add_lead(admin_client, campaign, "not-a-number<script>")
    assert answer.status_code == 200 and "not a phone number" in answer.content.decode()
    assert not Lead.objects.exists()


@pytest.fixture
def file_server_media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def test_failed_file_rows_matching_no_lead_leave_the_others_unconfirmed(
    make_upload_transaction, file_server, file_server_media
):
    now = timezone.now()
    upload_transaction = make_upload_transaction(
        3,
        state=UploadTransaction.State.COMPLETED,
        numbers_not_processed=2,
        finished_at=now,
        provider_finished_at=now,
    )
    named, *others = upload_transaction.leads.order_by("id").values_list("phone_number", flat=True)
    content = f"PhoneNumber,Reason\n{named[3:]},DND\n91234 5678,DND\n".encode()
    url = file_server.serve("/failed.csv", content)
    UploadTransaction.objects.filter(pk=upload_transaction.pk).update(failed_file_url=url)

    failed_file_fetch(upload_transaction=upload_transaction)

    statuses = lead_statuses(upload_transaction)
    assert statuses[named] == Lead.Status.FAILED
    assert {statuses[phone] for phone in others} == {Lead.Status.UNCONFIRMED}
