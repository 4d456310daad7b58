"""RQ jobs: ids in, one service call. Each job is named after the service it wraps, with a _job suffix."""

from django.contrib.auth import get_user_model

from calls.services import call_summary_posts_sweep
from campaigns.models import Lead
from uploads import callbacks, dispatcher, services
from uploads.models import UploadTransaction


def leads_push_job(query, user_id: int | None, statuses: list[str], check_duplicate: bool, redial: str = "") -> dict:
    """Batches a selection too big for the request; `query` is the pickled selection (Django supports it)."""
    leads = Lead.objects.all()
    leads.query = query
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    summary = services.leads_push(
        leads=leads, user=user, statuses=statuses, check_duplicate=check_duplicate, redial=redial
    )
    return summary.as_dict()


def account_dispatch_job(account_id: int) -> dict:
    dispatcher.clear_queued_marker(account_id)
    report = dispatcher.account_dispatch(account_id=account_id)
    return {"outcomes": report.outcomes, "recovered": report.recovered, "busy": report.busy}


def push_watchdog_job() -> dict:
    """Runs every LEADHUB_WATCHDOG_SECONDS while any batch is unfinished or awaits its callback, rescheduling
    itself: restarts dispatch for orphaned batches and sweeps callbacks that are waiting or half-applied."""
    dispatcher.clear_watchdog_marker()
    try:
        started = dispatcher.push_watchdog()
        swept = callbacks.callback_events_sweep()
        calls_swept = call_summary_posts_sweep()
    finally:  # whatever broke this run, the next one stays scheduled
        if dispatcher.unfinished_batches_exist():
            dispatcher.watchdog_ensure()
    return {"dispatchers_started": started, "callbacks": swept, "call_summaries": calls_swept}


def failed_file_fetch_job(upload_transaction_id: int) -> str:
    """Enqueued with callbacks.FAILED_FILE_RETRY: a transient failure raises, and RQ tries again later."""
    upload_transaction = UploadTransaction.objects.filter(pk=upload_transaction_id).first()
    if upload_transaction is None:
        return "the transaction no longer exists"
    return callbacks.failed_file_fetch(upload_transaction=upload_transaction)
