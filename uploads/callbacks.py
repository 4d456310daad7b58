"""CloudAgent's callbacks as they come in (docs/cloudagent-contract.md, "The asynchronous result"): each is stored
exactly as it came, committed before anything parses it, and then applied by the batch state machine
(services.callback_event_apply). The sweep here is the safety net behind the webhook.
"""

import ipaddress
import logging
from collections import defaultdict
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from campaigns.models import CloudAgentAccount
from cloudagent.callbacks import provider_text
from uploads import queues, selectors, services
from uploads.models import CallbackEvent, UploadTransaction

logger = logging.getLogger(__name__)


def callback_event_receive(
    *, account: CloudAgentAccount | None, body: bytes, content_type: str, remote_addr: str | None
) -> CallbackEvent:
    """Store the callback exactly as it came, committed before anything parses it: whatever happens next, the
    provider's answer is kept for inspection and can be applied again. A body that cannot even be stored as
    text (not UTF-8, NUL bytes) is stored escaped and marked invalid."""
    problem = ""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text, problem = body.decode("utf-8", "backslashreplace"), "the body is not UTF-8"
    if "\x00" in text:
        text, problem = text.replace("\x00", "\\x00"), problem or "the body contains NUL bytes"
    return CallbackEvent.objects.create(
        account=account,
        body=text,
        content_type=provider_text(content_type)[:200],
        remote_addr=_ip_address(remote_addr),
        state=CallbackEvent.State.INVALID if problem else CallbackEvent.State.RECEIVED,
        error=problem,
    )


def _ip_address(value: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address((value or "").strip()))
    except ValueError:
        return None


def callback_events_sweep(
    *, received_before: timedelta = timedelta(minutes=1), failed_files_after: timedelta = timedelta(minutes=5)
) -> dict[str, int]:
    """The safety net behind the webhook: apply waiting events whose transaction is now known, events left
    `received` by a request that died midway, and re-enqueue failed-file downloads whose job was never queued
    (Redis down at commit). Counts by resulting state, for the management command and the status page."""
    known = UploadTransaction.objects.filter(transaction_id__isnull=False).values("transaction_id")
    pending = CallbackEvent.objects.filter(
        Q(state=CallbackEvent.State.WAITING, transaction_id__in=known)
        | Q(state=CallbackEvent.State.RECEIVED, received_at__lt=timezone.now() - received_before)
    ).order_by("id")
    counts: dict[str, int] = defaultdict(int)
    for pk in pending.values_list("pk", flat=True):
        try:
            counts[services.callback_event_apply(event=CallbackEvent(pk=pk)).state] += 1
        except Exception:  # one event that breaks on our side must not stop the sweep of the others
            logger.exception("callback event %s could not be applied; it stays for the next sweep", pk)
            counts["errors"] += 1
    failed_file_pending = selectors.upload_transactions_failed_file_pending(older_than=failed_files_after)
    for upload_transaction_id in failed_file_pending.values_list("pk", flat=True):
        if queues.failed_file_fetch_enqueue(upload_transaction_id=upload_transaction_id):
            counts["failed_files_enqueued"] += 1
    counts["still_waiting"] = CallbackEvent.objects.filter(state=CallbackEvent.State.WAITING).count()
    return dict(counts)
