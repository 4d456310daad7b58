"""RQ jobs: ids in, one service call. Each job is named after the service it wraps, with a _job suffix; they are
enqueued by dotted path from uploads/queues.py."""

from uploads import callbacks, dispatcher, queues, selectors, services
from uploads.models import UploadTransaction


def leads_push_job(push_request_id: int) -> dict | None:
    """Batches a selection too big for the request, from the PushRequest row the request wrote."""
    summary = services.push_request_run(push_request_id=push_request_id)
    return summary.as_dict() if summary is not None else None


def account_dispatch_job(account_id: int) -> dict:
    queues.clear_queued_marker(account_id)
    report = dispatcher.account_dispatch(account_id=account_id)
    return {"outcomes": report.outcomes, "recovered": report.recovered, "busy": report.busy}


def push_watchdog_job() -> dict:
    """Runs every LEADHUB_WATCHDOG_SECONDS while any batch or push request is unfinished or awaits its callback,
    rescheduling itself: enqueues again lost push requests, restarts dispatch for orphaned batches and sweeps
    callbacks that are waiting or half-applied."""
    queues.clear_watchdog_marker()
    try:
        requests_recovered = services.push_requests_recover()
        started = dispatcher.push_watchdog()
        swept = callbacks.callback_events_sweep()
    finally:  # whatever broke this run, the next one stays scheduled
        if selectors.unfinished_batches_exist():
            queues.watchdog_ensure()
    return {"push_requests_recovered": requests_recovered, "dispatchers_started": started, "callbacks": swept}


def failed_file_fetch_job(upload_transaction_id: int) -> str:
    """Enqueued with queues.FAILED_FILE_RETRY: a transient failure raises, and RQ tries again later."""
    upload_transaction = UploadTransaction.objects.filter(pk=upload_transaction_id).first()
    if upload_transaction is None:
        return "the transaction no longer exists"
    return services.failed_file_fetch(upload_transaction=upload_transaction)
