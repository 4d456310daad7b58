"""The loop closed through real parts: leads pushed to the emulator over HTTP, its callback to our live server,
then its dials of the accepted leads and their call summaries (at once, then with the disposition) posted to
the account's URL to Push on our live server — and the calls land on their leads, the charts fill, and a
redial of the busy ones goes back with checkDuplicate=false and is dialled again."""

from collections import Counter

import pytest
from django.urls import reverse

from calls.models import Call, CallSummaryPost
from calls.selectors import call_summary_url_for, outcomes_summary
from calls.services import leads_redial
from campaigns.models import Lead
from tests.fixtures.push import dispatch
from uploads.services import leads_push

pytestmark = pytest.mark.django_db(transaction=True)

API_KEY = "demo-api-key-0123456789"


@pytest.fixture
def dialling(settings, live_server, push_account, push_emulator, tmp_path):
    settings.LEADHUB_PUBLIC_URL = live_server.url
    settings.MEDIA_ROOT = tmp_path
    push_emulator.set_push_url(call_summary_url_for(push_account))
    push_emulator.configure(
        push_mode="both",
        dial_rate=1000.0,
        dial_draw="cycle",
        dial_outcomes="answered=2,Busy=1,not_answered=1",
        dispositions="Interested=1,Not Interested=1",
        push_retry_delay=0.05,
    )
    return push_emulator


def push_and_dial(emulator, account, leads) -> None:
    leads_push(leads=leads)
    dispatch(account_id=account.pk)
    emulator.process_now()  # the upload, its callback, the dials and every summary, delayed ones included


def test_pushed_leads_are_dialled_and_their_calls_land_on_them(
    admin_client, dialling, push_account, campaign, make_leads
):
    make_leads(8)
    push_and_dial(dialling, push_account, Lead.objects.filter(campaign=campaign))

    assert set(Lead.objects.values_list("status", flat=True)) == {Lead.Status.UPLOADED}, "dialling is a second axis"
    calls = list(Call.objects.all())
    assert len(calls) == 8 and all(call.match == Call.Match.PHONE for call in calls)
    assert Counter(call.customer_status for call in calls) == {"answered": 4, "Busy": 2, "not_answered": 2}
    assert {call.disposition for call in calls if call.dial_status == "answered"} == {"Interested", "Not Interested"}
    assert all(call.audio_file for call in calls if call.dial_status == "answered")
    states = Counter(CallSummaryPost.objects.values_list("state", flat=True))
    assert states[CallSummaryPost.State.APPLIED] >= 8 and sum(states.values()) == 16, states
    assert set(Lead.objects.values_list("call_attempts", flat=True)) == {1}
    answered = Lead.objects.filter(last_dial_status="answered")
    assert answered.count() == 4 and not answered.filter(last_disposition="").exists()
    assert not any(API_KEY in body for body in CallSummaryPost.objects.values_list("body", flat=True))
    assert all(
        tries["status"] == 200 for call in dialling.inspect("calls")["calls"] for tries in call["posts"][0]["tries"]
    )

    outcomes = outcomes_summary(campaign=campaign)
    assert dict(outcomes["funnel"][:4]) == {"imported": 8, "uploaded": 8, "dialled": 8, "answered": 4}
    assert outcomes["contact_rate"] == 0.5
    page = admin_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()
    assert 'data-label="answered" data-value="4"' in page

    busy = set(Lead.objects.filter(last_customer_status="Busy").values_list("pk", flat=True))
    summary = leads_redial(leads=Lead.objects.filter(campaign=campaign), outcomes=["Busy"])
    assert summary.leads == 2
    dispatch(account_id=push_account.pk)
    dialling.process_now()

    transactions = dialling.inspect("transactions")["transactions"]
    assert (transactions[-1]["checkDuplicate"], transactions[-1]["rows"]) == (False, 2)
    assert Call.objects.count() == 10
    attempts = dict(Lead.objects.values_list("pk", "call_attempts"))
    assert {pk for pk, n in attempts.items() if n == 2} == busy
