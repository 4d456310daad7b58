"""RQ jobs: ids in, one service call. Each job is named after the service it wraps, with a _job suffix."""

from uploads import callbacks, dispatcher
from uploads.models import UploadTransaction


def account_dispatch_job(account_id: int) -> dict:
    dispatcher.clear_queued_marker(account_id)
    report = dispatcher.account_dispatch(account_id=account_id)
    return {"outcomes": report.outcomes, "recovered": report.recovered, "busy": report.busy}


def push_watchdog_job() -> dict:
    """Runs every LEADHUB_WATCHDOG_SECONDS while any batch is unfinished or awaits its callback, rescheduling
    itself: restarts dispatch for orphaned batches and sweeps callbacks that are waiting or half-applied."""
    dispatcher.clear_watchdog_marker()
    started = dispatcher.push_watchdog()
    swept = callbacks.callback_events_sweep()
    if dispatcher.unfinished_batches_exist():
        dispatcher.watchdog_ensure()
    return {"dispatchers_started": started, "callbacks": swept}


def failed_file_fetch_job(upload_transaction_id: int) -> str:
    """Enqueued with callbacks.FAILED_FILE_RETRY: a transient failure raises, and RQ tries again later."""
    upload_transaction = UploadTransaction.objects.filter(pk=upload_transaction_id).first()
    if upload_transaction is None:
        return "the transaction no longer exists"
    return callbacks.failed_file_fetch(upload_transaction=upload_transaction)
