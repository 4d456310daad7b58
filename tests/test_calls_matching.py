"""Which lead a call belongs to: the campaign by CampaignName within the account, then the number normalised as
the campaign normalises its leads, then the UUI (the lead's name as pushed); a call that matches nothing is kept."""

import pytest
from django.urls import reverse

from calls.models import Call
from campaigns.models import Campaign, CloudAgentAccount, Lead
from tests.fixtures.calls import call_summary

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("caller_id", ["9800000001", "09800000001", "+91 98000 00001", "919800000001"])
def test_the_number_matches_in_any_form_the_campaign_normalises(caller_id, campaign, make_leads, post_call_summary):
    lead = make_leads(3)[1]
    post_call_summary(call_summary(CallerID=caller_id, DialedNumber="", UUI=""))
    call = Call.objects.get()
    assert (call.lead_id, call.match, call.phone_number) == (lead.pk, "phone", "+919800000001")


def test_the_uui_matches_when_the_number_is_missing_or_unknown(campaign, make_leads, post_call_summary):
    leads = make_leads(3)
    post_call_summary(call_summary(CallerID="", DialedNumber="", UUI="Lead 2"))
    post_call_summary(call_summary(CallerID="9811111111", DialedNumber="", UUI="Lead 0"))
    calls = list(Call.objects.order_by("pk").values_list("lead_id", "match"))
    assert calls == [(leads[2].pk, "uui"), (leads[0].pk, "uui")]


def test_a_uui_shared_by_two_leads_matches_neither(campaign, make_leads, post_call_summary):
    Lead.objects.bulk_create(
        [Lead(campaign=campaign, phone_number=phone, name="Same Name") for phone in ("+919800000001", "+919800000002")]
    )
    post_call_summary(call_summary(CallerID="", DialedNumber="", UUI="Same Name"))
    assert Call.objects.get().lead_id is None


def test_an_unmatched_call_is_kept_with_everything_it_said(campaign, make_leads, post_call_summary, admin_client):
    make_leads(2)
    post_call_summary(call_summary(monitorUCID="900001", CallerID="9899999999", UUI="Nobody", Disposition="Wrong"))
    post_call_summary(call_summary(monitorUCID="900002", CampaignName="Not_A_Campaign"))
    unmatched = Call.objects.filter(lead__isnull=True).order_by("monitor_ucid")
    assert [(c.monitor_ucid, c.match) for c in unmatched] == [("900001", "none"), ("900002", "none")]
    assert unmatched[0].campaign == campaign and unmatched[0].disposition == "Wrong"
    assert unmatched[1].campaign is None and unmatched[1].campaign_name == "Not_A_Campaign"
    assert not Lead.objects.filter(call_attempts__gt=0).exists()
    page = admin_client.get("/admin/calls/call/?match=unmatched").content.decode()
    assert "9899999999" in page
    matched_only = admin_client.get("/admin/calls/call/?match=phone").content.decode()
    assert "9899999999" not in matched_only


def test_a_call_matched_later_counts_one_attempt(campaign, make_leads, post_call_summary):
    """The first post knew no lead (the campaign's lead was imported after the call); the delayed post, with the
    disposition, finds it and counts the attempt once."""
    summary = call_summary(monitorUCID="900010", CallerID="9800000005", Disposition="")
    post_call_summary(summary)
    assert Call.objects.get().lead_id is None
    lead = make_leads(1, start=5)[0]
    post_call_summary({**summary, "Disposition": "Sale"})
    post_call_summary({**summary, "Disposition": "Sale"})
    lead.refresh_from_db()
    assert (lead.call_attempts, lead.last_disposition) == (1, "Sale")
    assert Call.objects.get().lead_id == lead.pk


def test_the_campaign_is_looked_up_within_the_posting_account(campaign, make_leads, post_call_summary):
    """Two accounts may both have a campaign of this name: the URL's account decides."""
    other = CloudAgentAccount.objects.create(name="Other", user_name="o", api_key="other-key-0123456789")
    other_campaign = Campaign.objects.create(account=other, name="Demo_Outbound")
    Lead.objects.create(campaign=other_campaign, phone_number="+919800000001", name="Lead 1")
    mine = make_leads(2)[1]
    post_call_summary(call_summary())
    assert Call.objects.get().lead_id == mine.pk


def test_the_same_ucid_on_two_accounts_is_two_calls(campaign, make_leads, post_call_summary):
    other = CloudAgentAccount.objects.create(name="Other", user_name="o", api_key="other-key-0123456789")
    make_leads(2)
    post_call_summary(call_summary(monitorUCID="55"))
    post_call_summary(
        call_summary(monitorUCID="55"),
        url=reverse("cloudagent-call-summary", kwargs={"secret": other.call_summary_secret}),
    )
    assert Call.objects.filter(monitor_ucid="55").count() == 2
