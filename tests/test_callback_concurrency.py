"""Overlapping callbacks on real connections, one per thread: a provider retry, a duplicate, a Success racing a
Fail, the push and the sweep racing for a waiting callback. On PostgreSQL these deadlocked before rows were
locked transaction-first, then leads in primary-key order (docs/performance.md, Callback)."""

import threading

import pytest
from django.db import connection

from campaigns.models import Lead
from tests.fixtures.callbacks import callback_body, callback_data, lead_statuses
from uploads import callbacks, services
from uploads.models import CallbackEvent, UploadTransaction

pytestmark = pytest.mark.django_db(transaction=True)

Event = CallbackEvent.State


def run_together(*functions):
    """Start every function at the same instant, each on its own thread and database connection."""
    barrier = threading.Barrier(len(functions))
    results: list = [None] * len(functions)
    errors: list[BaseException] = []

    def run(index, function):
        try:
            barrier.wait()
            results[index] = function()
        except BaseException as exc:  # noqa: B036 - reported to the test below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=pair) for pair in enumerate(functions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a thread hung: a lock was never released"
    assert not errors, errors
    return results


def receive_and_apply(account, body: bytes, content_type: str):
    """What the view does with one request."""

    def run():
        event = callbacks.callback_event_receive(
            account=account, body=body, content_type=content_type, remote_addr="127.0.0.1"
        )
        return services.callback_event_apply(event=event).state

    return run


def test_the_same_callback_four_times_at_once_is_applied_once(account, make_upload_transaction):
    upload_transaction = make_upload_transaction(500)
    body, content_type = callback_body(callback_data(upload_transaction.transaction_id, rows=500))
    states = run_together(*[receive_and_apply(account, body, content_type)] * 4)
    assert sorted(states) == [Event.APPLIED] + [Event.IGNORED] * 3
    assert set(lead_statuses(upload_transaction).values()) == {Lead.Status.UPLOADED}


def test_a_success_racing_a_fail_settles_every_lead_one_way(account, make_upload_transaction):
    upload_transaction = make_upload_transaction(500)
    success = callback_body(callback_data(upload_transaction.transaction_id, rows=500))
    fail = callback_body(callback_data(upload_transaction.transaction_id, rows=500, status="Fail"), "form")
    states = run_together(receive_and_apply(account, *success), receive_and_apply(account, *fail))
    assert sorted(states) == [Event.APPLIED, Event.IGNORED]
    upload_transaction.refresh_from_db()
    expected = {UploadTransaction.State.COMPLETED: "uploaded", UploadTransaction.State.FAILED: "failed"}
    assert set(lead_statuses(upload_transaction).values()) == {expected[upload_transaction.state]}


def test_callbacks_for_different_transactions_do_not_block_each_other(account, make_upload_transaction):
    batches = [make_upload_transaction(200) for _ in range(3)]
    requests = [callback_body(callback_data(batch.transaction_id, rows=200)) for batch in batches]
    states = run_together(*[receive_and_apply(account, *request) for request in requests * 2])
    assert sorted(states) == [Event.APPLIED] * 3 + [Event.IGNORED] * 3
    for batch in batches:
        assert set(lead_statuses(batch).values()) == {Lead.Status.UPLOADED}


def test_the_push_and_the_sweep_racing_for_a_waiting_callback_apply_it_once(account, make_upload_transaction):
    upload_transaction = make_upload_transaction(300)
    transaction_id = upload_transaction.transaction_id
    UploadTransaction.objects.filter(pk=upload_transaction.pk).update(transaction_id=None)
    body, content_type = callback_body(callback_data(transaction_id, rows=300))
    assert receive_and_apply(account, body, content_type)() == Event.WAITING
    assert receive_and_apply(account, body, content_type)() == Event.WAITING
    UploadTransaction.objects.filter(pk=upload_transaction.pk).update(transaction_id=transaction_id)
    upload_transaction.refresh_from_db()

    run_together(
        lambda: services.callback_events_apply_waiting(upload_transaction=upload_transaction),
        lambda: services.callback_events_apply_waiting(upload_transaction=upload_transaction),
        callbacks.callback_events_sweep,
    )
    states = sorted(CallbackEvent.objects.values_list("state", flat=True))
    assert states == [Event.APPLIED, Event.IGNORED]
    assert set(lead_statuses(upload_transaction).values()) == {Lead.Status.UPLOADED}
