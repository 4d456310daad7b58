"""Dial again: the leads whose last call ended in the chosen outcomes (and not too recently) are pushed again,
over real HTTP to the emulator, with checkDuplicate=false (and isDelete=false) whatever the campaign says, and
the batch records why."""

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from calls.services import leads_redial
from campaigns.models import Lead
from tests.fixtures.calls import call_summary, call_summary_body
from tests.fixtures.push import dispatch
from uploads.models import PushRequest, UploadTransaction
from uploads.services import leads_push, push_request_run

pytestmark = pytest.mark.django_db(transaction=True)


def provider_time(delta: timedelta) -> str:
    """A StartTime as CloudAgent writes it: its local time, no zone."""
    return timezone.localtime(timezone.now() - delta).strftime("%Y-%m-%d %H:%M:%S")


@pytest.fixture
def dialled(push_account, campaign, make_leads, push_emulator):
    """Six leads pushed once and in the dialer; five of them dialled with different outcomes."""
    campaign.check_duplicate = campaign.skip_existing = True  # the redial must override both
    campaign.save()
    leads = make_leads(6)
    leads_push(leads=Lead.objects.filter(campaign=campaign))
    dispatch(account_id=push_account.pk)
    push_emulator.process_now()
    Lead.objects.update(status=Lead.Status.UPLOADED)  # as the callback leaves them
    client = Client()
    url = reverse("cloudagent-call-summary", kwargs={"secret": push_account.call_summary_secret})
    outcomes = [
        (0, "not_answered", "NoResponse", timedelta(hours=5)),  # due
        (1, "not_answered", "Busy", timedelta(hours=6)),  # due, by its customer status
        (2, "answered", "answered", timedelta(hours=5)),  # answered: not due
        (3, "not_answered", "NoResponse", timedelta(hours=1)),  # too recent
        (4, "not_answered", "NoResponse", timedelta(hours=8)),  # due, but not in the dialer any more
    ]
    for index, dial, customer, ago in outcomes:
        summary = call_summary(
            CallerID=leads[index].phone_number[3:],
            StartTime=provider_time(ago),
            DialStatus=dial,
            CustomerStatus=customer,
            Disposition="",
        )
        body, content_type = call_summary_body(summary)
        assert client.post(url, data=body, content_type=content_type).status_code == 200
    Lead.objects.filter(pk=leads[4].pk).update(status=Lead.Status.QUEUED)
    return leads


def test_redial_pushes_the_chosen_outcomes_with_check_duplicate_false(push_account, campaign, dialled, push_emulator):
    before = len(push_emulator.inspect("transactions")["transactions"])

    summary = leads_redial(
        leads=Lead.objects.filter(campaign=campaign), outcomes=["not_answered", "busy"], older_than=timedelta(hours=4)
    )

    assert (summary.leads, summary.batches) == (2, 1)
    assert summary.not_pushable == {"queued": 1}
    batch = UploadTransaction.objects.order_by("-pk").first()
    assert batch.options["redial"] == "redial: not_answered,Busy older than 4h"
    assert (batch.options["checkDuplicate"], batch.options["isDelete"]) == (False, False)
    assert set(batch.leads.values_list("pk", flat=True)) == {dialled[0].pk, dialled[1].pk}

    dispatch(account_id=push_account.pk)
    push_emulator.process_now()
    transactions = push_emulator.inspect("transactions")["transactions"]
    assert len(transactions) == before + 1
    sent = transactions[-1]
    assert (sent["checkDuplicate"], sent["isDelete"], sent["rows"]) == (False, False, 2)
    held = [lead["PhoneNumber"] for lead in push_emulator.inspect("leads")["leads"]["Demo_Outbound"]]
    for lead in dialled[:2]:
        assert held.count(lead.phone_number[3:]) == 2, "CloudAgent holds the number twice: a new attempt"
    assert held.count(dialled[2].phone_number[3:]) == 1


def test_push_leads_redial_from_the_command_line(campaign, dialled):
    out = StringIO()
    call_command(
        "push_leads",
        "--campaign",
        "Demo_Outbound",
        "--redial",
        "NoResponse",
        "--older-than",
        "2h",
        "--json",
        stdout=out,
    )
    assert json.loads(out.getvalue())["leads"] == 1  # lead 0; lead 3 is too recent, lead 4 is queued
    assert UploadTransaction.objects.order_by("-pk").first().options["redial"] == "redial: NoResponse older than 2h"


def test_the_admin_action_asks_which_outcomes_then_redials(admin_client, campaign, dialled):
    url = reverse("admin:campaigns_campaign_changelist")
    form = admin_client.post(url, {"action": "redial_campaign_leads", "_selected_action": [campaign.pk]})
    assert form.status_code == 200 and b"Dial again" in form.content
    done = admin_client.post(
        url,
        {
            "action": "redial_campaign_leads",
            "_selected_action": [campaign.pk],
            "apply": "1",
            "outcomes": ["not_answered"],
            "older_than_hours": "4",
        },
        follow=True,
    )
    shown = [str(message) for message in done.context["messages"]]
    assert any(message.startswith("Dialling again: 2 lead(s)") for message in shown), shown  # leads 0 and 1
    assert any("1 queued" in message for message in shown), shown


def test_dial_again_on_every_lead_the_filtered_list_holds(admin_client, campaign, dialled):
    """ "Select all" over a filtered Lead list: the form carries no ids, the list's filters find the leads again."""
    url = reverse("admin:campaigns_lead_changelist") + "?last_dial=NoResponse"
    chosen = {"action": "redial_selected_leads", "select_across": "1", "_selected_action": ["all"]}
    form = admin_client.post(url, chosen)
    assert form.status_code == 200 and b'value="all"' in form.content
    done = admin_client.post(url, {**chosen, "apply": "1", "outcomes": ["NoResponse"]}, follow=True)
    shown = [str(message) for message in done.context["messages"]]
    # leads 0 and 3 (any age: no "older than"); lead 4 ended NoResponse too but is queued again
    assert any(message.startswith("Dialling again: 2 lead(s)") for message in shown), shown


def test_a_redial_too_big_for_the_request_keeps_its_reason_through_the_background_push(
    campaign, dialled, push_settings
):
    push_settings.LEADHUB_PUSH_INLINE_LEADS = 1
    summary = leads_redial(leads=Lead.objects.filter(campaign=campaign), outcomes=["not_answered"])
    assert (summary.background, summary.leads) == (True, 3)  # leads 0, 1 and 3; lead 4 is queued
    push_request = PushRequest.objects.get()
    assert push_request.redial == "redial: not_answered"

    push_request_run(push_request_id=push_request.pk)

    batch = UploadTransaction.objects.order_by("-pk").first()
    assert batch.options["redial"] == "redial: not_answered"
    assert (batch.options["checkDuplicate"], batch.options["isDelete"], batch.row_count) == (False, False, 3)
