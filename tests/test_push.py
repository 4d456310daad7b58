"""Pushing leads: batches, the paced dispatcher, every outcome, recovery after a kill, fairness.

Real Redis and the emulator over HTTP, with the limits shrunk (tests/fixtures/push.py)."""

import json
import os
import socket
import threading
from datetime import timedelta

import django_rq
import pytest
from django.conf import settings
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from rq import SimpleWorker

from campaigns.models import Campaign, CloudAgentAccount, Lead
from tests.fixtures.core import LoopbackHTTPServer, QuietHandler
from tests.fixtures.push import dispatch
from tests.private_redis import free_port
from uploads import selectors, services
from uploads.dispatcher import unfinished_work_resume
from uploads.models import CallbackEvent, PushRequest, PushRequestLead, UploadTransaction
from uploads.ratelimit import account_pacer
from uploads.services import leads_push, leads_push_request, upload_transactions_repush

pytestmark = pytest.mark.django_db(transaction=True)


def requests_seen(emulator, campaign=None) -> list[dict]:
    seen = emulator.inspect()["requests"]
    return [r for r in seen if campaign is None or r.get("campaign") == campaign]


def emulator_phones(emulator, campaign: str) -> list[str]:
    """What the campaign holds once the emulator has processed every request it accepted."""
    emulator.process_now()
    return [lead["PhoneNumber"] for lead in emulator.inspect()["leads"].get(campaign, [])]


def rate_limit_answers(emulator) -> int:
    return sum(1 for r in requests_seen(emulator) if "too many" in str(r.get("answer", "")).lower())


def push_all(campaign) -> dict:
    return leads_push(leads=Lead.objects.filter(campaign=campaign)).as_dict()


@pytest.mark.smoke
def test_a_push_is_cut_into_batches_of_500_and_every_lead_reaches_cloudagent_once(
    push_account, campaign, make_leads, push_emulator
):
    make_leads(1201)
    summary = push_all(campaign)
    assert (summary["leads"], summary["batches"]) == (1201, 3)
    assert summary["eta_seconds"] > 0
    batches = list(UploadTransaction.objects.order_by("pk"))
    assert [b.row_count for b in batches] == [500, 500, 201]
    assert all(b.state == UploadTransaction.State.PENDING for b in batches)
    assert Lead.objects.filter(status=Lead.Status.QUEUED).count() == 1201

    report = dispatch(account_id=push_account.pk)

    assert report.outcomes == {"queued": 3}
    sent = requests_seen(push_emulator, "Demo_Outbound")
    assert sorted(r["rows"] for r in sent) == [201, 500, 500]
    phones = emulator_phones(push_emulator, "Demo_Outbound")
    assert len(phones) == len(set(phones)) == 1201
    assert all(len(p) == 10 for p in phones), "IN campaigns send the national 10-digit form"
    assert set(UploadTransaction.objects.values_list("state", flat=True)) == {UploadTransaction.State.QUEUED}
    assert UploadTransaction.objects.filter(transaction_id__isnull=True).count() == 0
    assert Lead.objects.filter(status=Lead.Status.SENT).count() == 1201
    assert rate_limit_answers(push_emulator) == 0


def test_leads_our_checks_refuse_become_invalid_and_take_no_slot(push_account, make_leads, push_emulator):
    campaign = Campaign.objects.create(
        account=push_account, name="Demo_Notes", column_map=["PhoneNumber", "Name", "Notes"]
    )
    header_chars = len("PhoneNumber") + 10 + len("Name") + len("Notes")
    make_leads(3, campaign=campaign)
    fits, too_long, ok = Lead.objects.order_by("pk")
    fits.name = ""
    fits.extra = {"Notes": "x" * (2000 - header_chars)}
    too_long.name = ""
    too_long.extra = {"Notes": "x" * (2001 - header_chars)}
    for lead in (fits, too_long):
        lead.save()

    summary = push_all(campaign)

    assert (summary["leads"], summary["batches"], summary["invalid"]) == (2, 1, 1)
    too_long.refresh_from_db()
    assert too_long.status == Lead.Status.INVALID and "2000" in too_long.status_reason
    assert too_long.upload_transaction is None
    dispatch(account_id=push_account.pk)
    assert sorted(emulator_phones(push_emulator, "Demo_Notes")) == sorted([fits.phone_number[3:], ok.phone_number[3:]])


def test_leads_in_other_states_are_reported_not_pushed(push_account, campaign, make_leads):
    make_leads(2)
    make_leads(3, start=100, status=Lead.Status.SENT)
    make_leads(1, start=200, status=Lead.Status.UPLOADED)
    summary = push_all(campaign)
    assert summary["leads"] == 2
    assert summary["not_pushable"] == {"sent": 3, "uploaded": 1}


def test_push_new_leads_command_prints_counts_and_eta(push_account, campaign, make_leads, capsys):
    make_leads(12)
    pacer = account_pacer(push_account.pk)
    assert pacer.try_acquire() == 0.0, "a request just took the free slot: the batch waits for the next one"
    call_command("push_leads", "--campaign", campaign.name, "--json")
    printed = json.loads(capsys.readouterr().out)
    assert printed["leads"] == 12 and printed["batches"] == 1
    assert 0 < printed["eta_seconds"] <= round(pacer.interval, 1) + 0.1


def test_a_rate_limit_answer_is_retried_in_the_next_slot_and_counted(push_account, campaign, make_leads, push_emulator):
    make_leads(10)
    push_all(campaign)
    push_emulator.force_fault("rate_limit", 1)

    report = dispatch(account_id=push_account.pk)

    batch = UploadTransaction.objects.get()
    assert report.outcomes == {"rate_limited": 1, "queued": 1}
    assert (batch.state, batch.rate_limited, batch.attempts) == (UploadTransaction.State.QUEUED, 1, 2)
    assert len(emulator_phones(push_emulator, "Demo_Outbound")) == 10


def test_a_server_error_backs_off_and_is_resent_with_check_duplicate(push_account, campaign, make_leads, push_emulator):
    make_leads(10)
    push_all(campaign)
    push_emulator.force_fault("error", 1)

    dispatch(account_id=push_account.pk)

    batch = UploadTransaction.objects.get()
    assert (batch.state, batch.attempts, batch.ambiguous_attempts) == (UploadTransaction.State.QUEUED, 2, 1)
    first, second = requests_seen(push_emulator, "Demo_Outbound")
    assert second["fields"]["checkDuplicate"] == "true", "a 5xx may have been queued: re-send must skip duplicates"
    assert batch.options["checkDuplicate"] is True


def test_a_dropped_connection_is_resent_with_check_duplicate_and_nothing_doubles(
    push_account, campaign, make_leads, push_emulator
):
    make_leads(20)
    push_all(campaign)
    push_emulator.force_fault("drop", 1)

    dispatch(account_id=push_account.pk)

    batch = UploadTransaction.objects.get()
    assert (batch.state, batch.ambiguous_attempts) == (UploadTransaction.State.QUEUED, 1)
    phones = emulator_phones(push_emulator, "Demo_Outbound")
    assert len(phones) == len(set(phones)) == 20, "the dropped request was queued; the re-send must not double it"


def test_transient_errors_give_up_after_max_attempts(push_account, campaign, make_leads, push_emulator):
    make_leads(5)
    push_all(campaign)
    push_emulator.force_fault("error", settings.CLOUDAGENT_MAX_ATTEMPTS)

    dispatch(account_id=push_account.pk)

    batch = UploadTransaction.objects.get()
    assert batch.state == UploadTransaction.State.ERROR and batch.attempts == settings.CLOUDAGENT_MAX_ATTEMPTS
    assert "gave up" in batch.last_error
    # Every attempt may have been queued: the operator must check, not assume they failed.
    assert set(Lead.objects.values_list("status", flat=True)) == {Lead.Status.UNCONFIRMED}


def test_an_unreachable_provider_is_not_ambiguous(account, campaign, make_leads, push_settings):
    account.base_url = "http://127.0.0.1:9"  # discard port: nothing listens, connection refused
    account.save()
    make_leads(5)
    push_all(campaign)

    dispatch(account_id=account.pk)

    batch = UploadTransaction.objects.get()
    assert (batch.state, batch.ambiguous_attempts) == (UploadTransaction.State.ERROR, 0)
    assert batch.options["checkDuplicate"] is False
    assert set(Lead.objects.values_list("status", flat=True)) == {Lead.Status.FAILED}


def test_bad_credentials_end_every_waiting_batch_and_flag_the_account(
    push_account, campaign, make_leads, push_emulator, settings
):
    settings.CLOUDAGENT_BATCH_SIZE = 10
    push_account.api_key = "wrong-key"
    push_account.save()
    make_leads(30)
    assert push_all(campaign)["batches"] == 3

    dispatch(account_id=push_account.pk)

    assert len(requests_seen(push_emulator)) == 1, "one refusal is enough to know the others would be refused"
    assert set(UploadTransaction.objects.values_list("state", flat=True)) == {UploadTransaction.State.ERROR}
    assert list(UploadTransaction.objects.order_by("pk").values_list("attempts", flat=True)) == [1, 0, 0]
    push_account.refresh_from_db()
    assert push_account.problem == "Invalid userName or apiKey"
    lead = Lead.objects.first()
    assert lead.status == Lead.Status.FAILED and "Invalid userName or apiKey" in lead.status_reason
    assert "wrong-key" not in UploadTransaction.objects.first().last_error


def test_an_unknown_campaign_is_flagged_and_its_leads_can_be_pushed_again(
    push_account, campaign, make_leads, push_emulator
):
    campaign.name = "No_Such_Campaign"
    campaign.save()
    make_leads(5)
    push_all(campaign)

    dispatch(account_id=push_account.pk)

    campaign.refresh_from_db()
    assert campaign.problem == "Invalid Campaign Name"
    assert UploadTransaction.objects.get().state == UploadTransaction.State.ERROR
    campaign.name = "Demo_Outbound"
    campaign.save()
    again = push_all(campaign)
    assert again["leads"] == 5, "failed leads are pushable once the operator fixed the cause"
    dispatch(account_id=push_account.pk)
    assert Lead.objects.filter(status=Lead.Status.SENT).count() == 5
    campaign.refresh_from_db()
    assert campaign.problem == ""


def test_campaigns_sharing_an_account_take_turns(push_account, campaign, make_leads, push_emulator, settings):
    settings.CLOUDAGENT_BATCH_SIZE = 10
    second = Campaign.objects.create(account=push_account, name="Demo_Second", column_map=campaign.column_map)
    make_leads(40)
    make_leads(20, campaign=second, start=1000)
    push_all(campaign)
    push_all(second)

    dispatch(account_id=push_account.pk)

    order = [r["campaign"] for r in requests_seen(push_emulator)]
    assert order == ["Demo_Outbound", "Demo_Second"] * 2 + ["Demo_Outbound"] * 2
    assert rate_limit_answers(push_emulator) == 0


def test_a_lead_is_never_in_two_live_batches(push_account, campaign, make_leads):
    make_leads(10)
    first = push_all(campaign)
    second = push_all(campaign)
    assert (first["leads"], second["leads"]) == (10, 0)
    assert second["not_pushable"] == {"queued": 10}
    assert UploadTransaction.objects.count() == 1


def test_run_dispatcher_until_idle_sends_every_batch(push_account, campaign, make_leads, push_emulator):
    """The path production takes: the push only writes batches; a dispatch process finds them in the database."""
    make_leads(15)
    push_all(campaign)
    call_command("run_dispatcher", "--until-idle", stdout=open(os.devnull, "w"))  # noqa: SIM115
    assert Lead.objects.filter(status=Lead.Status.SENT).count() == 15


def test_repush_sends_the_leads_of_an_overdue_batch_again_with_check_duplicate(
    push_account, campaign, make_leads, push_emulator, settings
):
    make_leads(5)
    push_all(campaign)
    dispatch(account_id=push_account.pk)
    waiting = UploadTransaction.objects.filter(pk=UploadTransaction.objects.get().pk)

    assert upload_transactions_repush(batches=waiting).leads == 0, "its callback is not overdue yet"

    settings.CLOUDAGENT_CALLBACK_OVERDUE_SECONDS = 0
    summary = upload_transactions_repush(batches=waiting)

    assert summary.leads == 5
    dispatch(account_id=push_account.pk)
    assert requests_seen(push_emulator)[-1]["fields"]["checkDuplicate"] == "true"
    assert Lead.objects.filter(status=Lead.Status.SENT).exclude(upload_transaction=waiting.get()).count() == 5
    assert UploadTransaction.objects.order_by("pk").last().options["resend"] is True


def test_repush_action_in_the_admin_takes_only_what_the_operator_can_act_on(
    admin_client, push_account, campaign, make_leads
):
    failed = UploadTransaction.objects.create(
        campaign=campaign, state=UploadTransaction.State.FAILED, transaction_id="1"
    )
    done = UploadTransaction.objects.create(
        campaign=campaign, state=UploadTransaction.State.COMPLETED, transaction_id="2"
    )
    make_leads(3, status=Lead.Status.FAILED, upload_transaction=failed)
    make_leads(2, start=10, status=Lead.Status.UPLOADED, upload_transaction=done)
    make_leads(1, start=20, status=Lead.Status.UNCONFIRMED, upload_transaction=done)

    page = admin_client.post(
        reverse("admin:uploads_uploadtransaction_changelist"),
        {"action": "repush_transactions", "_selected_action": [failed.pk, done.pk]},
        follow=True,
    )

    messages = " ".join(str(m) for m in page.context["messages"])
    assert "Queued 4 lead(s) in 1 batch(es)" in messages
    assert Lead.objects.filter(status=Lead.Status.QUEUED).count() == 4
    assert Lead.objects.filter(status=Lead.Status.UPLOADED, upload_transaction=done).count() == 2


def test_the_recovery_sweep_applies_a_callback_that_waited_for_its_transaction(push_account, campaign, redis_conn):
    batch = UploadTransaction.objects.create(
        campaign=campaign, state=UploadTransaction.State.QUEUED, transaction_id="42"
    )
    CallbackEvent.objects.create(
        account=push_account,
        transaction_id="42",
        state=CallbackEvent.State.WAITING,
        content_type="application/json",
        body='{"data": {"transactionId": "42", "status": "Fail", "message": "File Failed to Upload."}}',
    )

    result = unfinished_work_resume()

    assert result.get("applied") == 1
    batch.refresh_from_db()
    assert batch.state == UploadTransaction.State.FAILED


class InvalidDataProvider(QuietHandler):
    """A provider that refuses every request's data, as CloudAgent does for bulkData it cannot read."""

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"status": "failure", "message": "Please provide valid data"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_invalid_data_ends_the_batch_with_the_providers_message(account, campaign, make_leads, push_settings):
    provider = LoopbackHTTPServer(InvalidDataProvider)
    try:
        account.base_url = provider.url
        account.save()
        make_leads(3)
        push_all(campaign)

        report = dispatch(account_id=account.pk)
    finally:
        provider.close()

    assert report.outcomes == {"refused": 1}
    batch = UploadTransaction.objects.get()
    assert (batch.state, batch.last_error, batch.attempts) == (
        UploadTransaction.State.ERROR,
        "Please provide valid data",
        1,
    )
    assert set(Lead.objects.values_list("status_reason", flat=True)) == {"CloudAgent: Please provide valid data"}
    assert set(Lead.objects.values_list("status", flat=True)) == {Lead.Status.FAILED}


def test_the_campaign_progress_page_shows_leads_batches_and_budget(admin_client, push_account, campaign, make_leads):
    make_leads(12, status=Lead.Status.UPLOADED)
    make_leads(5, start=100)
    push_all(campaign)

    change = admin_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))
    progress_url = reverse("admin:campaigns_campaign_progress", args=[campaign.pk])
    assert progress_url in change.content.decode()
    assert admin_client.get(reverse("admin:campaigns_campaign_add")).status_code == 200
    page = admin_client.get(progress_url)

    assert page.status_code == 200
    progress = page.context["progress"]
    assert progress["leads"]["uploaded"] == 12 and progress["leads"]["queued"] == 5
    assert progress["batches"]["waiting"] == 1
    assert progress["budget"].limit == 5
    assert page.context["refresh"] is True, "the page refreshes itself while batches wait"
    assert 'http-equiv="refresh"' in page.content.decode()


def test_with_redis_unreachable_a_push_still_goes_in_and_the_progress_page_says_the_budget_is_unknown(
    admin_client, push_account, campaign, make_leads, settings
):
    """The database holds the work: a push and the pages that show it must not fail because Redis is down (a
    real client on a port where nothing listens)."""
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    make_leads(700)

    summary = push_all(campaign)
    page = admin_client.get(reverse("admin:campaigns_campaign_progress", args=[campaign.pk]))

    assert (summary["leads"], summary["batches"]) == (700, 2)
    assert summary["eta_seconds"] == pytest.approx(account_pacer(campaign.account_id).interval, abs=0.05)
    assert page.status_code == 200
    assert page.context["progress"]["budget"] is None and 'id="budget-unknown"' in page.content.decode()


def test_a_failing_redis_is_asked_once_for_a_push_eta_not_retried(push_account, campaign, make_leads, settings):
    """redis-py retries a failed call three times with back-off (~4.5 s): a push over a hundred accounts would
    wait minutes for its ETA while Redis is down. The ETA's client gives up at once."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def accept_and_hang_up():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(conn)
            conn.close()

    threading.Thread(target=accept_and_hang_up, daemon=True).start()
    settings.REDIS_URL = f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    make_leads(3)
    push_all(campaign)

    eta = selectors.push_eta_seconds(account_id=campaign.account_id)

    listener.close()
    assert eta == 0.0, "one batch waiting, its slot taken as free"
    assert len(accepted) == 3, "the push (its nudge, its ETA) and this ETA: one connection each, no retries"


def test_the_recovery_sweep_enqueues_again_a_push_request_whose_job_was_lost(
    push_account, campaign, make_leads, settings
):
    settings.LEADHUB_PUSH_INLINE_LEADS = 10
    settings.CLOUDAGENT_BATCH_SIZE = 10
    make_leads(25)
    summary = leads_push_request(leads=Lead.objects.filter(campaign=campaign))
    assert summary.background
    default = django_rq.get_queue("default")
    default.empty()  # Redis lost the job
    assert "push_requests_recovered" not in unfinished_work_resume(), "a fresh request's job may still be coming"

    PushRequest.objects.update(created_at=timezone.now() - timedelta(minutes=10))
    assert unfinished_work_resume()["push_requests_recovered"] == 1
    assert [job.func_name for job in default.jobs] == ["uploads.jobs.leads_push_job"]
    SimpleWorker([default], connection=default.connection).work(burst=True)

    assert Lead.objects.filter(status=Lead.Status.QUEUED).count() == 25
    push_request = PushRequest.objects.get()
    assert push_request.state == PushRequest.State.DONE and push_request.summary["leads"] == 25
    assert not PushRequestLead.objects.exists(), "the batches are the record once cut"


def test_a_push_too_big_for_the_request_is_batched_by_a_job(admin_client, push_account, campaign, make_leads, settings):
    settings.LEADHUB_PUSH_INLINE_LEADS = 10
    settings.CLOUDAGENT_BATCH_SIZE = 10
    make_leads(25)
    make_leads(2, start=100, status=Lead.Status.UPLOADED)

    page = admin_client.post(
        reverse("admin:campaigns_campaign_changelist"),
        {"action": "push_new_leads", "_selected_action": [campaign.pk]},
        follow=True,
    )

    message = " ".join(str(m) for m in page.context["messages"])
    assert "Batching 25 lead(s) in the background into about 3 batch(es)" in message
    assert Lead.objects.filter(status=Lead.Status.NEW).count() == 25, "the request only enqueued the work"
    default = django_rq.get_queue("default")
    assert [job.func_name for job in default.jobs] == ["uploads.jobs.leads_push_job"]

    SimpleWorker([default], connection=default.connection).work(burst=True)

    assert Lead.objects.filter(status=Lead.Status.QUEUED).count() == 25
    assert list(UploadTransaction.objects.order_by("pk").values_list("row_count", flat=True)) == [10, 10, 5]
    assert set(UploadTransaction.objects.values_list("pushed_by__username", flat=True)) == {"admin"}
    assert Lead.objects.filter(status=Lead.Status.UPLOADED).count() == 2


@pytest.mark.timeout(30)
def test_batches_of_an_inactive_account_or_campaign_wait_until_it_is_active_again(
    push_account, campaign, make_leads, push_emulator
):
    make_leads(5)
    push_all(campaign)
    for paused in (CloudAgentAccount.objects.filter(pk=push_account.pk), Campaign.objects.filter(pk=campaign.pk)):
        paused.update(is_active=False)

        report = dispatch(account_id=push_account.pk)

        assert report.outcomes == {}
        assert UploadTransaction.objects.get().state == UploadTransaction.State.PENDING
        assert requests_seen(push_emulator) == []
        paused.update(is_active=True)

    dispatch(account_id=push_account.pk)
    assert UploadTransaction.objects.get().state == UploadTransaction.State.QUEUED


def test_a_batch_sends_the_rows_built_at_push_time_and_keeps_none_once_sent(
    push_account, campaign, make_leads, push_emulator
):
    make_leads(3)
    push_all(campaign)
    batch = UploadTransaction.objects.get()
    assert [row[0] for row in json.loads(batch.built_rows)] == ["9800000000", "9800000001", "9800000002"]

    dispatch(account_id=push_account.pk)

    batch.refresh_from_db()
    assert (batch.state, batch.built_rows) == (UploadTransaction.State.QUEUED, "")
    assert sorted(emulator_phones(push_emulator, campaign.name)) == ["9800000000", "9800000001", "9800000002"]


def test_a_campaign_changed_after_the_push_has_its_rows_built_again_at_send_time(
    push_account, campaign, make_leads, push_emulator
):
    make_leads(2)
    push_all(campaign)
    campaign.phone_format = "e164"
    campaign.save()

    dispatch(account_id=push_account.pk)

    assert sorted(emulator_phones(push_emulator, campaign.name)) == ["+919800000000", "+919800000001"]


def test_a_lead_edited_past_the_limits_while_queued_is_left_out_at_send_time(push_account, make_leads, push_emulator):
    campaign = Campaign.objects.create(
        account=push_account, name="Demo_Notes", column_map=["PhoneNumber", "Name", "Notes"]
    )
    make_leads(3, campaign=campaign)
    push_all(campaign)
    edited = Lead.objects.order_by("pk").first()
    edited.extra = {"Notes": "x" * 2000}
    edited.save()  # as the admin's change form does

    dispatch(account_id=push_account.pk)

    edited.refresh_from_db()
    assert (edited.status, edited.upload_transaction) == (Lead.Status.INVALID, None)
    assert "2000" in edited.status_reason
    batch = UploadTransaction.objects.get()
    assert (batch.state, batch.row_count) == (UploadTransaction.State.QUEUED, 2)
    assert [r["rows"] for r in requests_seen(push_emulator)] == [2]


def test_a_batch_that_may_have_reached_cloudagent_earlier_ends_unconfirmed_not_failed(
    push_account, campaign, make_leads, push_emulator, settings
):
    settings.CLOUDAGENT_BATCH_SIZE = 5
    make_leads(10)
    push_all(campaign)
    first, second = UploadTransaction.objects.order_by("pk")
    UploadTransaction.objects.filter(pk=first.pk).update(ambiguous_attempts=1)  # an earlier answer was lost
    push_account.api_key = "wrong-key"
    push_account.save()

    dispatch(account_id=push_account.pk)

    assert set(Lead.objects.filter(upload_transaction=first).values_list("status", flat=True)) == {
        Lead.Status.UNCONFIRMED
    }
    assert set(Lead.objects.filter(upload_transaction=second).values_list("status", flat=True)) == {Lead.Status.FAILED}


def test_rate_limit_answers_spend_no_retry(push_account, campaign, make_leads, push_emulator):
    make_leads(5)
    push_all(campaign)
    UploadTransaction.objects.update(attempts=5, rate_limited=5)  # five rate-limit answers already
    push_emulator.force_fault("error", 1)

    dispatch(account_id=push_account.pk)

    batch = UploadTransaction.objects.get()
    assert (batch.state, batch.attempts) == (UploadTransaction.State.QUEUED, 7), (
        "one failure of three allowed, then accepted"
    )


def test_a_late_outcome_from_a_dispatcher_that_lost_its_claim_changes_nothing(push_account, campaign, make_leads):

    make_leads(3)
    push_all(campaign)
    stale = services.upload_transaction_claim_next(account_id=push_account.pk, last_served={})
    services.upload_transactions_recover_stale(account_ids=[push_account.pk])  # the lease lapsed: recovered
    fresh = services.upload_transaction_claim_next(account_id=push_account.pk, last_served={})
    assert fresh.pk == stale.pk

    services._finish_error(stale, "Invalid userName or apiKey")

    fresh.refresh_from_db()
    assert fresh.state == UploadTransaction.State.SENDING, "the second dispatcher's send is still its own"
    assert set(Lead.objects.values_list("status", flat=True)) == {Lead.Status.QUEUED}


def test_one_callback_that_breaks_on_our_side_does_not_stop_the_recovery_sweep(
    push_account, campaign, redis_conn, monkeypatch
):
    UploadTransaction.objects.create(campaign=campaign, state=UploadTransaction.State.QUEUED, transaction_id="42")
    for _ in range(2):
        CallbackEvent.objects.create(account=push_account, transaction_id="42", state=CallbackEvent.State.WAITING)
    calls = []

    def breaks_once(*, event):
        calls.append(event.pk)
        if len(calls) == 1:
            raise RuntimeError("a bug of ours, at an exact point")
        return CallbackEvent.objects.get(pk=event.pk)

    monkeypatch.setattr(services, "callback_event_apply", breaks_once)

    result = unfinished_work_resume()

    assert len(calls) == 2, "the second event was still swept"
    assert result["errors"] == 1
