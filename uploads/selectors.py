"""Read-only queries of the uploads app: for dashboards, the CLI, the admin and the services' own decisions."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from campaigns.models import Campaign, CloudAgentAccount, Lead, LeadImport
from uploads.models import PushRequest, UploadTransaction
from uploads.queues import LEADS_PUSH_JOB_TIMEOUT, lease_held
from uploads.ratelimit import account_pacer

# Batches to send, and batches sent that await their callback.
UNFINISHED_STATES = (UploadTransaction.State.PENDING, UploadTransaction.State.SENDING, UploadTransaction.State.QUEUED)


def unfinished_batches_exist() -> bool:
    """Batches to send or awaiting their callback, or a push request still to be cut into batches."""
    return (
        UploadTransaction.objects.filter(state__in=UNFINISHED_STATES).exists()
        or PushRequest.objects.exclude(state=PushRequest.State.DONE).exists()
    )


def push_requests_stalled(*, pending_for: timedelta = timedelta(minutes=5)) -> list[int]:
    """Push requests whose job seems lost: pending for `pending_for`, or running past the job's timeout."""
    now = timezone.now()
    return list(
        PushRequest.objects.filter(
            Q(state=PushRequest.State.PENDING, created_at__lt=now - pending_for)
            | Q(
                state=PushRequest.State.RUNNING,
                started_at__lt=now - timedelta(seconds=LEADS_PUSH_JOB_TIMEOUT),
            )
        ).values_list("pk", flat=True)
    )


def accounts_with_batches_to_send() -> list[int]:
    """Accounts with batches waiting, or left `sending` by a worker that may have died."""
    return list(
        UploadTransaction.objects.filter(state__in=[UploadTransaction.State.PENDING, UploadTransaction.State.SENDING])
        .order_by()
        .values_list("campaign__account_id", flat=True)
        .distinct()
    )


def next_retry_in(*, account_id: int) -> float | None:
    """Seconds until the earliest backed-off batch may go (0 if one is ready), None when nothing waits."""
    first = list(
        upload_transactions_sendable(account_id=account_id)
        .order_by(F("not_before").asc(nulls_first=True))
        .values_list("not_before", flat=True)[:1]
    )
    if not first:
        return None
    return 0.0 if first[0] is None else max(0.0, (first[0] - timezone.now()).total_seconds())


def upload_transactions_sendable(*, account_id: int):
    """Pending batches the dispatcher may send: an inactive account or campaign keeps its batches waiting."""
    return UploadTransaction.objects.filter(
        campaign__account_id=account_id,
        campaign__account__is_active=True,
        campaign__is_active=True,
        state=UploadTransaction.State.PENDING,
    )


def push_eta_seconds(*, account_id: int, more_batches: int = 0) -> float:
    """When the account's last waiting batch (and `more_batches` still to be cut) should go, at the pace the rate
    limit allows."""
    waiting = (
        more_batches
        + UploadTransaction.objects.filter(
            campaign__account_id=account_id,
            state__in=[UploadTransaction.State.PENDING, UploadTransaction.State.SENDING],
        ).count()
    )
    if not waiting:
        return 0.0
    status = account_pacer(account_id).status()
    return status.next_slot_in + (waiting - 1) * status.interval


def account_for_callback_secret(secret: str) -> CloudAgentAccount | None:
    """The account whose callback URL this is, or was until a rotation less than the grace period ago. Every
    secret is compared in constant time, none skipped, so the response time says nothing about how close a
    guess came (the URL is the only credential)."""
    match = None
    now = timezone.now()
    accounts = CloudAgentAccount.objects.only(
        "pk", "callback_secret", "previous_callback_secret", "previous_callback_secret_until"
    )
    for account in accounts:
        if constant_time_compare(account.callback_secret, secret):
            match = account
        until = account.previous_callback_secret_until
        if constant_time_compare(account.previous_callback_secret, secret) and until is not None and until > now:
            match = account
    return match if secret else None


def upload_transactions_failed_file_pending(*, older_than: timedelta = timedelta(minutes=5)):
    """Completed transactions still waiting on their failed file: leads open past the moment the job should
    have settled them. Only the sweep needs them; a healthy job finishes within seconds."""
    return (
        UploadTransaction.objects.filter(
            state=UploadTransaction.State.COMPLETED,
            finished_at__lt=timezone.now() - older_than,
            leads__status__in=(Lead.Status.SENT, Lead.Status.QUEUED),
        )
        .exclude(failed_file_url="")
        .distinct()
    )


# --- Selectors ---------------------------------------------------------------------------------------------


def callback_overdue_cutoff() -> datetime:
    return timezone.now() - timedelta(seconds=settings.CLOUDAGENT_CALLBACK_OVERDUE_SECONDS)


def upload_transactions_overdue():
    """Transactions CloudAgent queued whose callback has not come within CLOUDAGENT_CALLBACK_OVERDUE_SECONDS of
    being sent (of being created, if the push recorded no send time)."""
    return UploadTransaction.objects.alias(waiting_since=Coalesce("sent_at", "created_at")).filter(
        state=UploadTransaction.State.QUEUED, waiting_since__lt=callback_overdue_cutoff()
    )


def upload_transaction_is_overdue(upload_transaction: UploadTransaction, *, cutoff: datetime) -> bool:
    """The same rule as upload_transactions_overdue, for one row already loaded (an admin column)."""
    waiting_since = upload_transaction.sent_at or upload_transaction.created_at
    return upload_transaction.state == UploadTransaction.State.QUEUED and waiting_since < cutoff


def status_counts(*, campaign: Campaign | None = None) -> dict:
    """Leads by status and transactions by state, every key present (0 when none), for scripts to rely on, and
    how many queued transactions wait for a callback longer than CLOUDAGENT_CALLBACK_OVERDUE_SECONDS."""
    leads = Lead.objects.all()
    transactions = UploadTransaction.objects.all()
    if campaign is not None:
        leads = leads.filter(campaign=campaign)
        transactions = transactions.filter(campaign=campaign)
    lead_counts = dict.fromkeys(Lead.Status.values, 0)
    for row in leads.order_by().values("status").annotate(n=Count("id")):
        lead_counts[row["status"]] = row["n"]
    state_counts = dict.fromkeys(UploadTransaction.State.values, 0)
    for row in transactions.order_by().values("state").annotate(n=Count("id")):
        state_counts[row["state"]] = row["n"]
    overdue = upload_transactions_overdue()
    if campaign is not None:
        overdue = overdue.filter(campaign=campaign)
    return {"leads": lead_counts, "transactions": state_counts, "overdue": overdue.count()}


def campaign_progress(*, campaign: Campaign) -> dict:
    """What the campaign's progress page shows: leads by status, batches by stage, the account's budget."""

    counts = status_counts(campaign=campaign)
    states = counts["transactions"]
    budget = account_pacer(campaign.account_id).status()
    return {
        "leads": counts["leads"],
        "lead_total": sum(counts["leads"].values()),
        "batches": {
            "waiting": states["pending"],
            "sending now / next": states["sending"],
            "awaiting callback": states["queued"],
            "done": states["completed"],
            "failed": states["failed"] + states["error"],
        },
        "budget": budget,
        "dispatching": lease_held(campaign.account_id),
        "eta_seconds": push_eta_seconds(account_id=campaign.account_id),
    }


def dashboard() -> dict:
    """The admin's front page: where every lead stands, what waits on CloudAgent, and what needs a person."""

    counts = status_counts()
    return {
        **counts,
        "lead_total": sum(counts["leads"].values()),
        "accounts_refused": list(CloudAgentAccount.objects.exclude(problem="").order_by("name")[:10]),
        "campaigns_refused": list(Campaign.objects.exclude(problem="").select_related("account").order_by("name")[:10]),
        "needs_attention": UploadTransaction.objects.exclude(attention="").count(),
        "recent_imports": list(LeadImport.objects.select_related("campaign").order_by("-created_at")[:5]),
    }
