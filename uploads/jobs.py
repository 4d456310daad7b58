"""RQ jobs: ids in, one service call. Each job is named after the service it wraps, with a _job suffix; they are
enqueued by dotted path from uploads/queues.py."""

from uploads import services
from uploads.models import UploadTransaction


def leads_push_job(push_request_id: int) -> dict | None:
    """Batches a selection too big for the request, from the PushRequest row the request wrote."""
    summary = services.push_request_run(push_request_id=push_request_id)
    return summary.as_dict() if summary is not None else None


def failed_file_fetch_job(upload_transaction_id: int) -> str:
    """Enqueued with queues.FAILED_FILE_RETRY: a transient failure raises, and RQ tries again later."""
    upload_transaction = UploadTransaction.objects.filter(pk=upload_transaction_id).first()
    if upload_transaction is None:
        return "the transaction no longer exists"
    return services.failed_file_fetch(upload_transaction=upload_transaction)
