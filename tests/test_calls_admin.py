"""Calls where operators look: the lead's call history and dialling columns, the campaign's and the dashboard's
charts, the account's two URLs to paste into CloudAgent, the CLI's JSON and the export."""

import csv
import io
import json
import re
from datetime import datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from calls.models import Call
from calls.selectors import outcomes_summary
from campaigns.models import Campaign, Lead
from cloudagent.call_summary import DIAL_STATUSES
from tests.fixtures.calls import call_summary

pytestmark = pytest.mark.django_db

_STEP = re.compile(r'<g class="step" data-label="([^"]+)" data-value="(\d+)"')
_COLUMN = re.compile(r'<g class="column" data-label="([^"]+)" data-value="(\d+)"')


def chart_steps(page: str) -> dict[str, int]:
    return {label: int(value) for label, value in _STEP.findall(page)}


def chart_columns(page: str) -> dict[str, int]:
    return {label: int(value) for label, value in _COLUMN.findall(page)}


@pytest.fixture
def dialled_campaign(campaign, make_leads, post_call_summary):
    """10 leads, 6 uploaded; 4 dialled: lead 1 answered (Sale) after a busy try, lead 2 answered (Callback),
    lead 3 not answered twice, lead 4 busy; one unmatched call. Calls between 10:00 and 12:59 on one day."""
    leads = make_leads(10)
    Lead.objects.filter(pk__in=[lead.pk for lead in leads[:6]]).update(status=Lead.Status.UPLOADED)
    calls = [
        (1, "10:05:00", "not_answered", "Busy", ""),
        (1, "11:10:00", "answered", "answered", "Sale"),
        (2, "11:20:00", "answered", "answered", "Callback"),
        (3, "10:30:00", "not_answered", "NoResponse", ""),
        (3, "12:40:00", "not_answered", "NoResponse", ""),
        (4, "12:45:00", "not_answered", "Busy", ""),
    ]
    for n, (index, at, dial, customer, disposition) in enumerate(calls):
        post_call_summary(
            call_summary(
                monitorUCID=f"61{n}",
                CallerID=leads[index].phone_number[3:],
                UUI=leads[index].name,
                StartTime=f"2026-11-28 {at}",
                DialStatus=dial,
                CustomerStatus=customer,
                Disposition=disposition,
            )
        )
    post_call_summary(call_summary(monitorUCID="699", CallerID="9811111111", UUI="", StartTime="2026-11-28 12:50:00"))
    return campaign, leads


def test_the_campaign_page_charts_its_funnel_and_calls_per_hour(admin_client, dialled_campaign):
    campaign, _ = dialled_campaign
    page = admin_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()
    steps = chart_steps(page)
    assert [steps[name] for name in ("imported", "uploaded", "dialled", "answered")] == [10, 6, 4, 2]
    assert (steps["disposition: Sale"], steps["disposition: Callback"]) == (1, 1)
    columns = chart_columns(page)
    assert len(columns) == 24
    assert (columns["10:00"], columns["11:00"], columns["12:00"]) == (2, 2, 3)
    assert sum(columns.values()) == 7
    assert re.search(r'id="outcomes-contact-rate">\s*50%', page), "2 answered of 4 dialled"
    assert re.search(r'id="outcomes-attempts">\s*1\.50', page), "6 matched calls to 4 leads"
    assert "1 call matched no lead" in page
    assert "<script" not in page.split('class="call-outcomes"')[1].split("</div>")[0]


def test_the_dashboard_shows_the_same_across_campaigns(admin_client, dialled_campaign, account):
    campaign, _ = dialled_campaign
    other = Campaign.objects.create(account=account, name="Second")
    Lead.objects.create(campaign=other, phone_number="+919700000001", name="X", status=Lead.Status.UPLOADED)
    page = admin_client.get(reverse("admin:index")).content.decode()
    steps = chart_steps(page)
    assert [steps[name] for name in ("imported", "uploaded", "dialled", "answered")] == [11, 7, 4, 2]
    row = page.split(f'href="{reverse("admin:campaigns_campaign_change", args=[campaign.pk])}"')[1].split("</tr>")[0]
    assert [int(n) for n in re.findall(r"<td>(\d+)</td>", row)] == [7, 4, 2]
    assert "50%" in row


def test_charts_render_empty_without_calls(admin_client, campaign):
    page = admin_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()
    assert chart_steps(page)["dialled"] == 0
    assert "no calls yet" in page


def test_a_lead_shows_its_call_history_and_dialling_fields(admin_client, dialled_campaign):
    _, leads = dialled_campaign
    page = admin_client.get(reverse("admin:campaigns_lead_change", args=[leads[1].pk])).content.decode()
    assert "call history" in page.lower()
    assert page.count("https://recordings.example.com/7.mp3") == 2
    assert "Sale" in page and "Busy" in page
    lead = Lead.objects.get(pk=leads[1].pk)
    assert (lead.call_attempts, lead.last_dial_status, lead.last_disposition) == (2, "answered", "Sale")


def test_the_lead_list_filters_by_last_outcome(admin_client, dialled_campaign):
    _, leads = dialled_campaign
    url = reverse("admin:campaigns_lead_changelist")
    shown = admin_client.get(url, {"last_dial": "Busy"}).context["cl"].result_list
    assert [lead.pk for lead in shown] == [leads[4].pk]
    shown = admin_client.get(url, {"last_dial": "not_answered"}).context["cl"].result_list
    assert sorted(lead.pk for lead in shown) == sorted([leads[3].pk, leads[4].pk])
    assert len(admin_client.get(url, {"last_dial": "none"}).context["cl"].result_list) == 6
    shown = admin_client.get(url, {"last_disposition": "Callback"}).context["cl"].result_list
    assert [lead.pk for lead in shown] == [leads[2].pk]


def test_the_call_list_searches_by_ucid_and_number(admin_client, dialled_campaign):
    url = reverse("admin:calls_call_changelist")
    assert [c.monitor_ucid for c in admin_client.get(url, {"q": "612"}).context["cl"].result_list] == ["612"]
    assert len(admin_client.get(url, {"q": "+919811111111"}).context["cl"].result_list) == 1


def test_the_account_page_and_add_account_give_both_urls(admin_client, account):
    page = admin_client.get(reverse("admin:campaigns_cloudagentaccount_change", args=[account.pk])).content.decode()
    assert f"/cloudagent/callback/{account.callback_secret}/" in page
    assert f"/cloudagent/calls/{account.call_summary_secret}/" in page
    out = StringIO()
    call_command("add_account", "Demo account", "--user-name", "u", "--api-key", "k" * 20, "--json", stdout=out)
    payload = json.loads(out.getvalue())
    assert payload["callback_url"].endswith(f"/cloudagent/callback/{account.callback_secret}/")
    assert payload["cdr_url"].endswith(f"/cloudagent/calls/{account.call_summary_secret}/")


def test_leadhub_status_counts_calls_by_every_dial_status(dialled_campaign):
    out = StringIO()
    call_command("leadhub_status", "--json", stdout=out)
    calls = json.loads(out.getvalue())["calls"]
    assert set(DIAL_STATUSES) <= set(calls)
    assert calls == {**dict.fromkeys(DIAL_STATUSES, 0), "answered": 3, "not_answered": 4}
    out = StringIO()
    call_command("leadhub_status", stdout=out)
    assert "not_answered" in out.getvalue()
    counted = [line for line in out.getvalue().splitlines() if line.startswith("  ")]
    assert len({line.rindex(" ") for line in counted}) == 1, "the counts line up under the longest name"


def test_the_export_has_the_dialling_columns(admin_client, dialled_campaign):
    _, leads = dialled_campaign
    data = {"format": "0", "resource": "0"}
    for name in ("phone_number", "call_attempts", "last_dial_status", "last_disposition", "last_call_at"):
        data[f"leadexportresource_{name}"] = "on"
    response = admin_client.post(reverse("admin:campaigns_lead_export"), data)
    rows = {
        row["phone_number"]: row
        for row in csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig")))
    }
    row = rows[leads[1].phone_number]
    assert (row["call_attempts"], row["last_dial_status"], row["last_disposition"]) == ("2", "answered", "Sale")
    assert row["last_call_at"].startswith("2026-11-28")
    assert rows[leads[0].phone_number]["call_attempts"] == "0"


def test_per_hour_counts_every_hour_in_the_site_time_zone(dialled_campaign):
    campaign, _ = dialled_campaign
    hours = outcomes_summary(campaign=campaign)["per_hour"]
    assert len(hours) == 24
    assert all(b - a == timedelta(hours=1) for (a, _), (b, _) in zip(hours, hours[1:], strict=False))
    assert isinstance(hours[-1][0], datetime) and hours[-1][0].hour == 12
    assert Call.objects.filter(campaign=campaign).count() == 7
