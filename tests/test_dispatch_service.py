"""The dispatch service with real processes: accounts shared between two dispatchers without ever exceeding
the limit, the pacer seeded from the database after Redis forgets, run_workers restarting a child that died,
and /healthz saying why pushing is stalled."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta

import psutil
import pytest
from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign, CloudAgentAccount, Lead
from tests.fixtures.push import PUSH_LIMITS, dispatch, subprocess_env
from uploads import services
from uploads.dispatcher import RECORD, STEP, DispatchLoop, PriorityPool, _Account
from uploads.models import DispatchLease, DispatchNode, UploadTransaction
from uploads.ratelimit import account_pacer
from uploads.services import leads_push

pytestmark = pytest.mark.django_db(transaction=True)

State = UploadTransaction.State


def wait_until_sent(timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    unsent = UploadTransaction.objects.filter(state__in=[State.PENDING, State.SENDING])
    while unsent.exists():
        assert time.monotonic() < deadline, "batches were left unsent"
        time.sleep(0.1)


def most_in_any_window(arrivals: list[float], window: float) -> int:
    arrivals = sorted(arrivals)
    return max((sum(1 for t in arrivals[i:] if t - start < window) for i, start in enumerate(arrivals)), default=0)


def test_two_dispatch_processes_share_the_accounts_and_never_exceed_the_limit(
    many_accounts, make_leads, start_dispatcher, settings
):
    settings.CLOUDAGENT_BATCH_SIZE = 5
    emulator, campaigns = many_accounts(4)
    for n, campaign in enumerate(campaigns):
        make_leads(60, campaign=campaign, start=n * 1000)
    with transaction.atomic():
        for campaign in campaigns:
            leads_push(leads=Lead.objects.filter(campaign=campaign))

    first, second = start_dispatcher(), start_dispatcher()
    wait_until_sent()
    first.stop()
    second.stop()

    sent = emulator.inspect("requests")["requests"]
    assert not [r for r in sent if "too many" in str(r.get("answer", "")).lower()], "no rate-limit answer"
    window, limit = PUSH_LIMITS["CLOUDAGENT_WINDOW_SECONDS"], PUSH_LIMITS["CLOUDAGENT_REQUESTS_PER_WINDOW"]
    for n in range(4):
        arrivals = [r["monotonic"] for r in sent if r.get("userName") == f"user_{n}"]
        assert len(arrivals) == 12
        assert most_in_any_window(arrivals, window) <= limit
    assert "took account" in first.log() and "took account" in second.log(), "both served some accounts"
    emulator.process_now()
    phones = [lead["PhoneNumber"] for leads in emulator.inspect("leads")["leads"].values() for lead in leads]
    assert len(phones) == len(set(phones)) == 240


def test_after_redis_forgets_the_pacer_the_next_sends_still_respect_the_window(
    account, campaign, make_leads, start_emulator, push_settings, redis_conn
):
    """A fresh dispatcher with an empty pacer would send at once; the database knows the last five requests
    and the pacer, seeded with them, waits until the window has room."""
    push_settings.CLOUDAGENT_WINDOW_SECONDS = window = 4.0
    push_settings.CLOUDAGENT_RATE_MARGIN = 0.05
    push_settings.CLOUDAGENT_RATE_MIN_SLACK_SECONDS = 0.05
    push_settings.CLOUDAGENT_BATCH_SIZE = 5
    emulator = start_emulator("--requests-per-window", "5", "--window-seconds", str(window))
    account.base_url = emulator.url
    account.save()
    make_leads(25)
    leads_push(leads=Lead.objects.filter(campaign=campaign))
    dispatch()
    for key in redis_conn.scan_iter("leadhub:pacer:*"):  # Redis came back empty
        redis_conn.delete(key)
    make_leads(5, start=100)
    leads_push(leads=Lead.objects.filter(campaign=campaign, status=Lead.Status.NEW))

    dispatch()

    sent = emulator.inspect("requests")["requests"]
    assert len(sent) == 6
    assert not [r for r in sent if "too many" in str(r.get("answer", "")).lower()]
    arrivals = sorted(r["monotonic"] for r in sent)
    assert arrivals[5] - arrivals[0] >= window, "the sixth request waited for the first to leave the window"


def test_run_workers_starts_again_a_child_that_died_and_stops_them_all_on_sigterm(private_redis):
    env = {**subprocess_env(), "REDIS_URL": private_redis.url}
    supervisor = subprocess.Popen(
        [sys.executable, "manage.py", "run_workers"],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def dispatcher_pid(other_than: int | None = None, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for child in psutil.Process(supervisor.pid).children():
                try:
                    if "run_dispatcher" in child.cmdline() and child.pid != other_than:
                        return child.pid
                except psutil.Error:  # the killed one, a zombie until the supervisor reaps it
                    continue
            time.sleep(0.1)
        raise AssertionError("no run_dispatcher child")

    try:
        first = dispatcher_pid()
        os.kill(first, signal.SIGKILL)
        second = dispatcher_pid(other_than=first)
        assert second != first and supervisor.poll() is None, "the others kept running"
        children = psutil.Process(supervisor.pid).children()
        assert len(children) == 4, "three RQ workers and the dispatcher"
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=60) == 0
        assert not [child for child in children if child.is_running()], "none was left behind"
    finally:
        if supervisor.poll() is None:
            supervisor.kill()


def test_healthz_says_why_pushing_is_stalled(client, admin_client, account, campaign, make_leads, push_settings):
    make_leads(3)
    leads_push(leads=Lead.objects.filter(campaign=campaign))

    nobody = json.loads(admin_client.get("/healthz").content)
    assert nobody["dispatch"] == "stalled"
    assert "no dispatcher is running" in " ".join(nobody["dispatch_detail"]["stalled"])

    services.dispatch_node_heartbeat(name="host:1:abc", accounts=0, problem="Redis unreachable: ConnectionError")
    CloudAgentAccount.objects.filter(pk=account.pk).update(is_active=False)
    Campaign.objects.filter(pk=campaign.pk).update(problem="")
    reasons = " ".join(json.loads(admin_client.get("/healthz").content)["dispatch_detail"]["stalled"])
    assert "Redis unreachable" in reasons and f"account {account.name}" in reasons and "inactive" in reasons

    # Without a login the page says that, and how many reasons, but names no account, host or message.
    anonymous = client.get("/healthz")
    assert json.loads(anonymous.content)["dispatch"] == "stalled"
    assert json.loads(anonymous.content)["dispatch_detail"]["stalled"] == 2
    assert account.name not in anonymous.content.decode() and "host:1:abc" not in anonymous.content.decode()

    DispatchNode.objects.update(problem="")
    CloudAgentAccount.objects.filter(pk=account.pk).update(is_active=True)
    healthy = json.loads(admin_client.get("/healthz").content)
    assert healthy["dispatch"] == "ok" and healthy["dispatch_detail"]["batches_waiting"] == 1


def test_the_admin_front_page_says_why_pushing_is_stalled(admin_client, campaign, make_leads, push_settings):
    make_leads(3)
    leads_push(leads=Lead.objects.filter(campaign=campaign))

    html = admin_client.get(reverse("admin:index")).content.decode()

    assert "Pushing is stalled" in html and "no dispatcher is running" in html
    assert 'id="dashboard-dispatchers" style="text-align: right">0 (0)<' in html


def test_a_batch_given_back_is_ambiguous_only_if_its_request_may_have_left(push_account, campaign, make_leads):
    make_leads(600)
    leads_push(leads=Lead.objects.filter(campaign=campaign))
    unsent = services.upload_transaction_claim_next(account_id=push_account.pk, last_served={})
    maybe_sent = services.upload_transaction_claim_next(account_id=push_account.pk, last_served={})
    UploadTransaction.objects.filter(pk=maybe_sent.pk).update(last_attempt_at=timezone.now())  # its grant

    assert services.upload_transaction_give_back(batch=unsent)
    assert services.upload_transaction_give_back(batch=maybe_sent)

    unsent.refresh_from_db()
    maybe_sent.refresh_from_db()
    assert (unsent.state, unsent.ambiguous_attempts) == (State.PENDING, 0)
    assert (maybe_sent.state, maybe_sent.ambiguous_attempts) == (State.PENDING, 1)


def test_an_answer_that_could_not_be_recorded_is_never_sent_again_from_memory(
    push_account, campaign, make_leads, push_emulator, monkeypatch
):
    """The database stayed down past every retry of the outcome write: the dispatcher gives the batch back as
    ambiguous once it can, and the re-send skips what CloudAgent already holds."""
    make_leads(5)
    leads_push(leads=Lead.objects.filter(campaign=campaign))
    monkeypatch.setattr(services, "OUTCOME_WRITE_DELAYS", (0.01,))
    record_accepted = services._record_accepted
    calls = []

    def database_down_for_the_first_answer(batch, result):
        calls.append(batch.pk)
        if len(calls) <= 2:  # a crash at an exact point: both tries of the first outcome write
            raise OperationalError("the database went away")
        return record_accepted(batch, result)

    monkeypatch.setattr(services, "_record_accepted", database_down_for_the_first_answer)

    dispatch(account_id=push_account.pk)

    sent = push_emulator.inspect("requests")["requests"]
    assert [r["fields"]["checkDuplicate"] for r in sent] == ["false", "true"]
    batch = UploadTransaction.objects.get()
    assert (batch.state, batch.ambiguous_attempts) == (State.QUEUED, 1)
    push_emulator.process_now()
    phones = [lead["PhoneNumber"] for lead in push_emulator.inspect("leads")["leads"]["Demo_Outbound"]]
    assert len(phones) == len(set(phones)) == 5


def test_every_due_send_goes_before_any_outcome_is_written(many_accounts, make_leads):
    """A push's first sends all fall due at once; writing an answered batch's outcome (an UPDATE of its leads)
    waits until every due send has left, so the last account's first request is not held up by the others'."""
    emulator, campaigns = many_accounts(3)
    for n, campaign in enumerate(campaigns):
        make_leads(2, campaign=campaign, start=n * 100)
    with transaction.atomic():
        for campaign in campaigns:
            leads_push(leads=Lead.objects.filter(campaign=campaign))

    DispatchLoop(until_idle=True, threads=1).run()

    arrivals = [r["time"] for r in emulator.inspect("requests")["requests"]]
    recorded = UploadTransaction.objects.values_list("sent_at", flat=True)
    assert len(arrivals) == len(recorded) == 3
    assert max(arrivals) < min(recorded).timestamp()


def test_the_first_batches_of_many_accounts_are_claimed_and_made_ready_in_the_same_few_queries(
    many_accounts, make_leads
):
    """After a push over a hundred accounts every first send is due at once: the bookkeeping before them must
    not grow by queries per account."""
    _, campaigns = many_accounts(6)
    for n, campaign in enumerate(campaigns):
        make_leads(3, campaign=campaign, start=n * 100)
        leads_push(leads=Lead.objects.filter(campaign=campaign))

    def queries_to_get_ready(accounts):
        with CaptureQueriesContext(connection) as queries:
            claimed = services.upload_transactions_claim_first(account_ids=accounts)
            prepared = services.upload_transactions_prepare(batches=claimed)
        assert sorted(p.batch.campaign.account_id for p in prepared) == sorted(accounts)
        assert all(len(p.rows) == 3 for p in prepared)
        return len(queries)

    account_ids = [campaign.account_id for campaign in campaigns]
    assert queries_to_get_ready(account_ids[:2]) == queries_to_get_ready(account_ids[2:])
    assert UploadTransaction.objects.filter(state=State.SENDING).count() == 6


def test_a_dispatcher_taking_accounts_makes_ready_at_once_only_the_batches_whose_slot_is_free(
    many_accounts, make_leads
):
    """A batch made ready for a slot seconds away would only wait in memory; the account's own step claims it
    ahead of its slot instead."""
    _, (free, busy) = many_accounts(2)
    for n, campaign in enumerate((free, busy)):
        make_leads(3, campaign=campaign, start=n * 100)
        leads_push(leads=Lead.objects.filter(campaign=campaign))
    sent_just_now = UploadTransaction.objects.create(campaign=busy, state=State.QUEUED, last_attempt_at=timezone.now())
    loop = DispatchLoop(until_idle=True)
    for campaign in (free, busy):  # as _take holds them, without letting their steps run
        account_id = campaign.account_id
        loop._accounts[account_id] = _Account(account_id, 0.0, account_pacer(account_id, loop._redis))

    loop._first_batches_ready([free.account_id, busy.account_id])

    states = dict(UploadTransaction.objects.exclude(pk=sent_just_now.pk).values_list("campaign", "state"))
    assert states == {free.pk: State.SENDING, busy.pk: State.PENDING}
    assert loop._accounts[free.account_id].prepared.rows and loop._accounts[busy.account_id].prepared is None
    loop.stop()
    loop._shutdown()
    assert UploadTransaction.objects.filter(campaign=free, state=State.PENDING).exists(), "the claim went back"


@pytest.mark.parametrize(
    "failure", [OperationalError("the database went away"), RuntimeError("a bug in the shortcut")], ids=repr
)
def test_when_getting_taken_accounts_ready_together_fails_half_way_each_goes_on_alone(
    push_account, campaign, make_leads, push_emulator, monkeypatch, failure
):
    """The batch was claimed, then the shortcut broke before it was ready (an outage, or a bug): the loop goes on,
    and the account's first step gives the batch back as never sent and sends it once, without checkDuplicate."""
    make_leads(5)
    leads_push(leads=Lead.objects.filter(campaign=campaign))
    prepare = services.upload_transactions_prepare
    calls = []

    def database_gone_the_first_time(*, batches):
        calls.append(len(batches))
        if len(calls) == 1:
            raise failure
        return prepare(batches=batches)

    monkeypatch.setattr(services, "upload_transactions_prepare", database_gone_the_first_time)

    dispatch(account_id=push_account.pk)

    assert calls[0] == 1, "the shortcut had claimed the batch"
    sent = push_emulator.inspect("requests")["requests"]
    assert [r["fields"]["checkDuplicate"] for r in sent] == ["false"]
    assert UploadTransaction.objects.get().state == State.QUEUED


def test_claiming_for_many_accounts_starts_each_with_its_lowest_campaign(many_accounts, make_leads):
    _, (campaign,) = many_accounts(1)
    later = Campaign.objects.create(account=campaign.account, name="Outbound_later", column_map=["PhoneNumber"])
    make_leads(2, campaign=later)
    make_leads(2, campaign=campaign, start=100)
    leads_push(leads=Lead.objects.filter(campaign=later))  # the older batch belongs to the later campaign
    leads_push(leads=Lead.objects.filter(campaign=campaign))

    (claimed,) = services.upload_transactions_claim_first(account_ids=[campaign.account_id])

    assert claimed.campaign_id == campaign.pk
    assert list(UploadTransaction.objects.filter(state=State.PENDING).values_list("campaign", flat=True)) == [later.pk]


def test_the_priority_pool_runs_the_most_urgent_task_first_and_everything_before_it_stops():
    pool = PriorityPool(1, "test")
    started, ran = threading.Event(), []
    release = threading.Event()

    def first():
        started.set()
        release.wait(10)

    def record(name):
        ran.append(name)
        if name == "record 1":  # a task queued while shutting down still runs
            pool.submit(RECORD, record, "record 2")

    pool.submit(STEP, first)
    started.wait(10)
    pool.submit(RECORD, record, "record 1")
    pool.submit(STEP, record, "step")
    release.set()
    pool.shutdown()

    assert ran == ["step", "record 1", "record 2"]


def test_leases_are_taken_together_up_to_the_limit_and_never_from_a_live_holder(settings):
    settings.LEADHUB_DISPATCH_LEASE_SECONDS = 30
    ids = [
        CloudAgentAccount.objects.create(name=f"lease {n}", user_name=f"lease_{n}", api_key=f"key-{n}-0123456789").pk
        for n in range(5)
    ]

    first = services.dispatch_leases_take(holder="a", account_ids=ids, limit=3)
    second = services.dispatch_leases_take(holder="b", account_ids=ids, limit=10)

    assert first == ids[:3]
    assert second == ids[3:], "what another process holds is not taken"
    assert services.dispatch_leases_take(holder="c", account_ids=ids, limit=10) == []

    # "a" died: once its leases lapse, its accounts go to whoever asks.
    DispatchLease.objects.filter(holder="a").update(expires_at=timezone.now() - timedelta(seconds=1))
    assert services.dispatch_leases_take(holder="c", account_ids=ids, limit=10) == ids[:3]
    assert services.dispatch_leases_renew(holder="a", account_ids=ids[:3]) == set()
