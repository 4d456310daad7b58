"""Read-only queries of the uploads app: for dashboards, the CLI, the admin and the services' own decisions."""

from collections.abc import Iterable
from datetime import datetime, timedelta

import redis
from django.conf import settings
from django.db.models import Count, F, Min, Q
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from campaigns.models import Campaign, CloudAgentAccount, Lead, LeadImport
from uploads.models import DispatchLease, DispatchNode, PushRequest, UploadTransaction
from uploads.queues import LEADS_PUSH_JOB_TIMEOUT, redis_fail_fast, redis_problem
from uploads.ratelimit import PacerStatus, SlotPacer, account_pacer


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
    """Accounts a dispatcher must serve: batches that may be sent (active account and campaign), or left
    `sending` by a process that may be dead."""
    State = UploadTransaction.State
    batches = UploadTransaction.objects.filter(
        Q(state=State.PENDING, campaign__is_active=True, campaign__account__is_active=True) | Q(state=State.SENDING)
    )
    return sorted(set(batches.order_by().values_list("campaign__account_id", flat=True).distinct()))


def accounts_recent_attempts(*, account_ids: Iterable[int], seconds: float) -> dict[int, list[float]]:
    """Unix times (the pacer's clock) of each account's requests within the last `seconds`, the latest per
    batch, in order: what seeds the pacer when Redis has forgotten it. One query for any number of accounts."""
    since = timezone.now() - timedelta(seconds=seconds)
    moments = UploadTransaction.objects.filter(campaign__account_id__in=list(account_ids), last_attempt_at__gt=since)
    found: dict[int, list[float]] = {}
    for account_id, moment in moments.order_by("last_attempt_at").values_list(
        "campaign__account_id", "last_attempt_at"
    ):
        found.setdefault(account_id, []).append(moment.timestamp())
    return found


def dispatch_nodes_live() -> int:
    """Dispatch processes that sent a heartbeat within a lease: the ones accounts are shared between."""
    since = timezone.now() - timedelta(seconds=settings.LEADHUB_DISPATCH_LEASE_SECONDS)
    return DispatchNode.objects.filter(heartbeat_at__gte=since).count()


def next_retry_in(*, account_id: int) -> float | None:
    """Seconds until the earliest backed-off batch may go (0 if one is ready), None when nothing waits."""
    first = list(
        upload_transactions_sendable(account_ids=[account_id])
        .order_by(F("not_before").asc(nulls_first=True))
        .values_list("not_before", flat=True)[:1]
    )
    if not first:
        return None
    return 0.0 if first[0] is None else max(0.0, (first[0] - timezone.now()).total_seconds())


def upload_transactions_sendable(*, account_ids: Iterable[int]):
    """Pending batches the dispatcher may send: an inactive account or campaign keeps its batches waiting."""
    return UploadTransaction.objects.filter(
        campaign__account_id__in=list(account_ids),
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
    pacer = account_pacer(account_id, redis_fail_fast())
    status = pacer_status(pacer)
    # With the pacer out of reach (Redis down) a push still goes in: the estimate takes the next slot as free.
    return (status.next_slot_in if status else 0.0) + (waiting - 1) * pacer.interval


def pacer_status(pacer: SlotPacer) -> PacerStatus | None:
    """The pacer's state, or None while Redis is unreachable: the database holds the work, so pages and pushes
    go on without the budget figures."""
    try:
        return pacer.status()
    except redis.RedisError:
        return None


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
    budget = pacer_status(account_pacer(campaign.account_id, redis_fail_fast()))
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
        "dispatching": account_dispatching(account_id=campaign.account_id),
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
        "dispatch": dispatch_health(),
    }


def account_dispatching(*, account_id: int) -> bool:
    """A live dispatch process holds the account."""
    leases = DispatchLease.objects.filter(account_id=account_id, expires_at__gt=timezone.now())
    return leases.exclude(holder="").exists()


def dispatch_health() -> dict:
    """Whether batches are moving, and if not, why — for /healthz and the admin's front page.

    `stalled` lists reasons a person can act on: batches waiting with no dispatcher alive (none started, or all
    dead), a dispatcher that says it cannot reach Redis or the database, accounts or campaigns whose batches
    wait because they are inactive or CloudAgent refused them, batches that have waited past a lease with no
    dispatcher holding their account."""
    now = timezone.now()
    lease = timedelta(seconds=settings.LEADHUB_DISPATCH_LEASE_SECONDS)
    State = UploadTransaction.State
    waiting = UploadTransaction.objects.filter(state__in=[State.PENDING, State.SENDING])
    nodes = list(DispatchNode.objects.filter(heartbeat_at__gte=now - lease))
    last_heartbeat = DispatchNode.objects.order_by("-heartbeat_at").values_list("heartbeat_at", flat=True).first()
    stalled = []
    waiting_count = waiting.count()
    if waiting_count and not nodes:
        seen = f"last heartbeat {last_heartbeat:%Y-%m-%d %H:%M:%S} UTC" if last_heartbeat else "never started"
        stalled.append(f"{waiting_count} batches wait but no dispatcher is running ({seen}): start `make worker`")
    stalled += [f"dispatcher {node.name}: {node.problem}" for node in nodes if node.problem]
    blocked = (
        waiting.filter(state=State.PENDING)
        .filter(Q(campaign__account__is_active=False) | Q(campaign__is_active=False))
        .order_by()
        .values("campaign__account__name", "campaign__name", "campaign__account__is_active")
        .distinct()
    )
    for row in blocked[:10]:
        what = "account" if not row["campaign__account__is_active"] else "campaign"
        name = row["campaign__account__name"] if what == "account" else row["campaign__name"]
        stalled.append(f"batches of {what} {name} wait: the {what} is inactive")
    refused = CloudAgentAccount.objects.exclude(problem="").filter(campaigns__upload_transactions__in=waiting)
    stalled += [f"account {a.name}: CloudAgent refused it ({a.problem[:200]})" for a in refused.distinct()[:10]]
    if nodes:
        held = DispatchLease.objects.filter(expires_at__gt=now).exclude(holder="").values("account_id")
        orphaned = (
            waiting.filter(campaign__is_active=True, campaign__account__is_active=True)
            .exclude(campaign__account_id__in=held)
            .aggregate(oldest=Min("updated_at"))["oldest"]
        )
        if orphaned and orphaned < now - 2 * lease:
            stalled.append(f"batches wait since {orphaned:%H:%M:%S} UTC with no dispatcher holding their account")
    unreachable = redis_problem()
    if unreachable:
        stalled.append(f"Redis unreachable ({unreachable}): no send can take a rate-limit slot")
    return {
        "dispatchers": len(nodes),
        "accounts_held": sum(node.accounts for node in nodes),
        "batches_waiting": waiting_count,
        "stalled": stalled,
    }
