"""The call-summary webhook ("URL to Push"): every body shape through the real view, the API key never kept,
bad input answered 400 / 404 / 413 / 405, our own failures 202 then swept, and duplicates changing nothing."""

import json
import logging
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from calls import services
from calls.models import Call, CallSummaryPost
from campaigns.models import CloudAgentAccount, Lead
from tests.fixtures.calls import CALL_SHAPES, call_summary, call_summary_body
from uploads.dispatcher import unfinished_work_resume

pytestmark = pytest.mark.django_db

Post = CallSummaryPost.State
API_KEY = "demo-api-key-0123456789"


def merge_that_breaks(*args, **kwargs):
    """A failure of ours at the exact point a post is applied."""
    raise RuntimeError("database hiccup")


@pytest.mark.parametrize("shape", CALL_SHAPES)
def test_every_shape_makes_the_same_call_on_the_lead(shape, campaign, make_leads, post_call_summary):
    lead = make_leads(3)[1]
    response = post_call_summary(call_summary(monitorUCID="700001"), shape)
    assert response.status_code == 200, response.content
    assert response.json()["status"] == Post.APPLIED
    call = Call.objects.get()
    assert (call.monitor_ucid, call.lead_id, call.match, call.campaign_id) == ("700001", lead.pk, "phone", campaign.pk)
    assert (call.dial_status, call.customer_status, call.agent_status) == ("answered", "answered", "answered")
    assert (call.disposition, call.agent_id, call.agent_name) == ("Interested", "agent7", "Asha")
    assert (call.duration_seconds, call.time_to_answer_seconds) == (128, 7)
    assert call.audio_file == "https://recordings.example.com/7.mp3"
    assert timezone.localtime(call.started_at).strftime("%Y-%m-%d %H:%M:%S %Z") == "2026-11-29 10:15:02 IST"
    assert "Apikey" not in call.summary and call.summary["Skill"] == "sales"
    lead.refresh_from_db()
    assert (lead.call_attempts, lead.last_dial_status, lead.last_disposition) == (1, "answered", "Interested")
    assert lead.last_call_at == call.started_at
    assert lead.status == Lead.Status.NEW, "dialling is a second axis: the upload status stays"


@pytest.mark.parametrize("shape", CALL_SHAPES)
def test_the_api_key_is_never_stored_nor_logged(shape, campaign, make_leads, post_call_summary, caplog):
    make_leads(2)
    caplog.set_level(logging.DEBUG)
    post_call_summary(call_summary(), shape)
    post_call_summary(b"data=%7B%22Apikey%22%3A%22" + API_KEY.encode() + b"%22%2C%20broken", content_type="")
    post_call_summary(json.dumps({"monitorUCID": "", "Apikey": API_KEY}).encode(), content_type="application/json")
    bodies = list(CallSummaryPost.objects.values_list("body", flat=True))
    assert len(bodies) == 3 and all(API_KEY not in body for body in bodies)
    assert CallSummaryPost.objects.filter(state=Post.INVALID).count() == 2
    assert all(API_KEY not in json.dumps(summary) for summary in Call.objects.values_list("summary", flat=True))
    assert API_KEY not in caplog.text
    account = CloudAgentAccount.objects.get()
    assert account.call_summary_secret not in caplog.text, "Django's request log would print the secret URL"


def test_the_key_is_removed_from_every_table_even_in_an_unknown_field(campaign, make_leads, post_call_summary):
    make_leads(2)
    post_call_summary(call_summary(Comments=f"key was {API_KEY}", apiKey=API_KEY))
    with connection.cursor() as cursor:
        for table in ("calls_call", "calls_callsummarypost"):
            cursor.execute(f"SELECT * FROM {table}")
            assert API_KEY not in repr(cursor.fetchall())


@pytest.mark.parametrize(
    "body, content_type",
    [
        (b"", "application/x-www-form-urlencoded"),
        (b"data=not-json", "application/x-www-form-urlencoded"),
        (b"[1, 2]", "application/json"),
        (json.dumps({"CampaignName": "Demo_Outbound"}).encode(), "application/json"),
        (b"hello=world", "application/x-www-form-urlencoded"),
        (b"\xff\xfe", "application/json"),
        (b"--x\r\n\r\n--x--", "multipart/form-data; boundary=x"),
    ],
)
def test_malformed_posts_are_answered_400_and_kept(body, content_type, campaign, post_call_summary):
    response = post_call_summary(body, content_type=content_type)
    assert response.status_code == 400
    post = CallSummaryPost.objects.get()
    assert post.state == Post.INVALID and post.error
    assert not Call.objects.exists()


def test_a_wrong_secret_is_404_and_stores_nothing(account, campaign, post_call_summary):
    url = reverse("cloudagent-call-summary", kwargs={"secret": "not-the-secret"})
    assert post_call_summary(call_summary(), url=url).status_code == 404
    upload_callback_secret = reverse("cloudagent-call-summary", kwargs={"secret": account.callback_secret})
    assert post_call_summary(call_summary(), url=upload_callback_secret).status_code == 404, "a secret of its own"
    assert not CallSummaryPost.objects.exists()


def test_get_is_refused_and_an_oversized_body_is_413(client, call_summary_url, post_call_summary, settings):
    assert client.get(call_summary_url).status_code == 405
    settings.CLOUDAGENT_CALL_SUMMARY_MAX_BYTES = 1000
    response = post_call_summary(call_summary(Comments="x" * 2000))
    assert response.status_code == 413
    assert not CallSummaryPost.objects.exists()


def test_the_same_summary_twice_changes_nothing(campaign, make_leads, post_call_summary):
    lead = make_leads(2)[1]
    summary = call_summary()
    assert post_call_summary(summary).json()["status"] == Post.APPLIED
    before = Call.objects.values().get()
    response = post_call_summary(summary, "json-object")
    assert response.status_code == 200 and response.json()["status"] == Post.DUPLICATE
    assert Call.objects.values().get() == before
    lead.refresh_from_db()
    assert lead.call_attempts == 1


def test_a_late_disposition_completes_the_same_call(campaign, make_leads, post_call_summary):
    lead = make_leads(2)[1]
    immediate = call_summary(monitorUCID="800001", Disposition="", Comments="")
    post_call_summary(immediate)
    lead.refresh_from_db()
    assert (lead.call_attempts, lead.last_dial_status, lead.last_disposition) == (1, "answered", "")
    delayed = {**immediate, "Disposition": "Sale", "Comments": "wants the gold plan"}
    assert post_call_summary(delayed).json()["status"] == Post.APPLIED
    call = Call.objects.get()
    assert (call.disposition, call.comments, call.posts) == ("Sale", "wants the gold plan", 2)
    lead.refresh_from_db()
    assert (lead.call_attempts, lead.last_disposition) == (1, "Sale")
    # The immediate post delivered again afterwards (a retry) erases nothing.
    assert post_call_summary(immediate).json()["status"] == Post.DUPLICATE
    assert Call.objects.get().disposition == "Sale"


def test_a_disposition_arriving_before_the_immediate_post_is_kept(campaign, make_leads, post_call_summary):
    lead = make_leads(2)[1]
    delayed = call_summary(monitorUCID="800002", Disposition="Callback")
    post_call_summary(delayed)
    post_call_summary({**delayed, "Disposition": ""})
    lead.refresh_from_db()
    assert (lead.call_attempts, lead.last_disposition) == (1, "Callback")


def test_an_older_summary_never_overwrites_the_leads_last_call(campaign, make_leads, post_call_summary):
    lead = make_leads(2)[1]
    post_call_summary(call_summary(StartTime="2026-11-29 12:00:00", DialStatus="not_answered", Disposition=""))
    post_call_summary(call_summary(StartTime="2026-11-29 09:00:00", DialStatus="answered", Disposition="Sale"))
    lead.refresh_from_db()
    assert lead.call_attempts == 2
    assert (lead.last_dial_status, lead.last_disposition) == ("not_answered", "")
    assert timezone.localtime(lead.last_call_at).hour == 12


def test_a_failure_on_our_side_is_202_and_the_sweep_applies_it(campaign, make_leads, post_call_summary, monkeypatch):
    lead = make_leads(2)[1]

    monkeypatch.setattr(services, "_call_merge", merge_that_breaks)
    response = post_call_summary(call_summary())
    assert response.status_code == 202
    assert CallSummaryPost.objects.get().state == Post.RECEIVED
    monkeypatch.undo()
    CallSummaryPost.objects.update(received_at=timezone.now() - timedelta(minutes=5))
    call_command("apply_call_summaries")
    assert CallSummaryPost.objects.get().state == Post.APPLIED
    assert Call.objects.get().lead_id == lead.pk


def test_a_post_is_a_few_queries_whatever_the_number_of_leads(campaign, make_leads, post_call_summary):
    make_leads(300)
    post_call_summary(call_summary())  # warm
    with CaptureQueriesContext(connection) as queries:
        assert post_call_summary(call_summary(CallerID="9800000150")).status_code == 200
    statements = [q["sql"] for q in queries.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]
    assert len(statements) <= 10, statements


def test_a_call_inserted_meanwhile_by_its_other_post_is_merged_into(
    campaign, make_leads, post_call_summary, monkeypatch
):
    """Two posts of one call at the same instant: the one that finds the row there when it inserts merges into it."""
    lead = make_leads(2)[1]
    summary = call_summary(monitorUCID="810001", Disposition="Sale")
    real_match = services._lead_match

    def match_while_the_other_post_inserts(*args):
        monkeypatch.setattr(services, "_lead_match", real_match)
        services.call_summary_post_take(
            account=CloudAgentAccount.objects.get(),
            body=call_summary_body({**summary, "Disposition": ""})[0],
            content_type="application/x-www-form-urlencoded",
            remote_addr=None,
        )
        return real_match(*args)

    monkeypatch.setattr(services, "_lead_match", match_while_the_other_post_inserts)
    assert post_call_summary(summary).json()["status"] == Post.APPLIED
    assert list(CallSummaryPost.objects.values_list("state", flat=True)) == [Post.APPLIED, Post.APPLIED]
    call = Call.objects.get()
    assert (call.disposition, call.posts, call.lead_id) == ("Sale", 2, lead.pk)
    lead.refresh_from_db()
    assert (lead.call_attempts, lead.last_disposition) == (1, "Sale")


def test_the_dispatchers_recovery_sweep_applies_a_post_left_received(
    campaign, make_leads, post_call_summary, monkeypatch, redis_conn
):
    lead = make_leads(2)[1]
    monkeypatch.setattr(services, "_call_merge", merge_that_breaks)
    assert post_call_summary(call_summary()).status_code == 202
    monkeypatch.undo()
    CallSummaryPost.objects.update(received_at=timezone.now() - timedelta(minutes=5))

    assert unfinished_work_resume()["call_summaries_applied"] == 1
    assert Call.objects.get().lead_id == lead.pk


def test_an_api_key_the_key_ring_cannot_read_costs_no_call(account, campaign, make_leads, post_call_summary):
    """A key ring changed without re-encrypting: the post is still taken, its Apikey removed by shape."""
    make_leads(2)
    with connection.cursor() as cursor:  # the ORM would encrypt it: write a token no configured key made
        cursor.execute(
            "UPDATE campaigns_cloudagentaccount SET api_key = %s WHERE id = %s",
            [Fernet(Fernet.generate_key()).encrypt(b"another-key").decode(), account.pk],
        )
    response = post_call_summary(call_summary())
    assert response.status_code == 200 and response.json()["status"] == Post.APPLIED
    assert API_KEY not in CallSummaryPost.objects.get().body
