"""RQ jobs: ids in, one service call. Each job is named after the service it wraps, with a _job suffix."""

from django.contrib.auth import get_user_model

from campaigns.models import Lead
from uploads import callbacks, services
from uploads.models import UploadTransaction


def leads_push_job(query, user_id: int | None, statuses: list[str], check_duplicate: bool) -> dict:
    """Batches a selection too big for the request; `query` is the pickled selection (Django supports it)."""
    leads = Lead.objects.all()
    leads.query = query
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    summary = services.leads_push(leads=leads, user=user, statuses=statuses, check_duplicate=check_duplicate)
    return summary.as_dict()


def failed_file_fetch_job(upload_transaction_id: int) -> str:
    """Enqueued with callbacks.FAILED_FILE_RETRY: a transient failure raises, and RQ tries again later."""
    upload_transaction = UploadTransaction.objects.filter(pk=upload_transaction_id).first()
    if upload_transaction is None:
        return "the transaction no longer exists"
    return callbacks.failed_file_fetch(upload_transaction=upload_transaction)
