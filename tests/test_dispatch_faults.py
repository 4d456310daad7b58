"""The dispatch service under faults, with real processes: a dispatcher killed outright, Redis restarted empty
mid-push, database connections dropped during a send. Windows are shrunk (tests/fixtures/push.py); the tests
assert what must hold — every lead delivered once, the limit kept — never how long it took."""

import time

import pytest
from django.db import connection

from campaigns.models import Lead
from tests.fixtures.push import dispatch
from uploads.models import UploadTransaction
from uploads.services import leads_push

pytestmark = pytest.mark.django_db(transaction=True)

State = UploadTransaction.State
Status = Lead.Status


def push_all(campaign) -> None:
    leads_push(leads=Lead.objects.filter(campaign=campaign))


def wait_until_sent(timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    unsent = UploadTransaction.objects.filter(state__in=[State.PENDING, State.SENDING])
    while unsent.exists():
        assert time.monotonic() < deadline, f"still unsent: {list(unsent.values('pk', 'state', 'last_error'))}"
        time.sleep(0.1)


def delivered_once(emulator, campaign: str, expected: int) -> None:
    emulator.process_now()
    phones = [lead["PhoneNumber"] for lead in emulator.inspect("leads")["leads"].get(campaign, [])]
    assert len(phones) == len(set(phones)) == expected


def rate_limit_answers(emulator) -> int:
    return sum(1 for r in emulator.inspect("requests")["requests"] if "too many" in str(r.get("answer", "")).lower())


def test_a_dispatcher_killed_outright_is_taken_over_without_losing_or_doubling_a_lead(
    push_account, campaign, make_leads, push_emulator, start_dispatcher, settings
):
    settings.CLOUDAGENT_BATCH_SIZE = 5
    make_leads(25)
    push_all(campaign)
    push_emulator.force_fault("slow", 1)  # the first request hangs: the kill comes while it is in flight
    doomed = start_dispatcher()
    push_emulator.wait_for(lambda snapshot: len(snapshot["requests"]) == 1, timeout=30)
    doomed.kill()
    assert UploadTransaction.objects.filter(state=State.SENDING).count() == 1

    report = dispatch()  # waits for the dead process's lease to lapse, then takes the account over

    assert report.recovered == 1
    resent = UploadTransaction.objects.get(ambiguous_attempts=1)
    assert resent.state == State.QUEUED
    sent = push_emulator.inspect("requests")["requests"]
    assert [r["fields"]["checkDuplicate"] for r in sent if r.get("transactionId") == resent.transaction_id] == ["true"]
    assert set(UploadTransaction.objects.values_list("state", flat=True)) == {State.QUEUED}
    assert Lead.objects.filter(status=Status.SENT).count() == 25
    delivered_once(push_emulator, "Demo_Outbound", 25)
    assert rate_limit_answers(push_emulator) == 0


def test_redis_restarted_empty_mid_push_the_push_finishes_without_a_new_one(
    push_account, campaign, make_leads, push_emulator, private_redis, start_dispatcher, settings
):
    settings.CLOUDAGENT_BATCH_SIZE = 5
    make_leads(60)
    push_all(campaign)
    batches = UploadTransaction.objects.count()
    dispatcher = start_dispatcher(redis_url=private_redis.url)
    push_emulator.wait_for(lambda snapshot: len(snapshot["requests"]) >= 3, timeout=30)

    private_redis.kill()
    time.sleep(1)  # an outage the dispatcher must wait out, not die of
    private_redis.start()  # empty: the pacer's memory and any job are gone

    wait_until_sent()
    assert dispatcher.process.poll() is None, "the dispatcher survived the outage"
    assert UploadTransaction.objects.count() == batches, "nothing was pushed again"
    assert Lead.objects.filter(status=Status.SENT).count() == 60
    delivered_once(push_emulator, "Demo_Outbound", 60)
    assert rate_limit_answers(push_emulator) <= 1
    assert dispatcher.stop() == 0


def test_database_connections_dropped_during_a_send_lose_no_accepted_answer(
    push_account, campaign, make_leads, push_emulator, start_dispatcher
):
    if connection.vendor != "postgresql":
        pytest.skip("pg_terminate_backend is PostgreSQL's")
    make_leads(10)
    push_all(campaign)
    push_emulator.force_fault("slow", 1)  # accepted, answered seconds later: the window to drop connections in
    dispatcher = start_dispatcher(CLOUDAGENT_READ_TIMEOUT=20)
    push_emulator.wait_for(lambda snapshot: len(snapshot["requests"]) == 1, timeout=30)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchone()[0] >= 1, "the dispatcher's connections were dropped"

    wait_until_sent()
    batch = UploadTransaction.objects.get()
    assert (batch.state, batch.attempts, batch.ambiguous_attempts) == (State.QUEUED, 1, 0), "its answer was kept"
    assert len(push_emulator.inspect("requests")["requests"]) == 1, "nothing was sent again"
    assert Lead.objects.filter(status=Status.SENT).count() == 10
    assert dispatcher.process.poll() is None
    assert dispatcher.stop() == 0
    assert "could not record a send's outcome" in dispatcher.log(), "the write was retried, not given up"
