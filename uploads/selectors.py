"""Read-only queries for dashboards and the CLI."""

from datetime import timedelta

import redis
from django.conf import settings
from django.db.models import Count, Min, Q
from django.utils import timezone

from campaigns.models import Campaign, CloudAgentAccount, Lead, LeadImport
from uploads.callbacks import upload_transactions_overdue
from uploads.models import DispatchLease, DispatchNode, UploadTransaction
from uploads.ratelimit import account_pacer
from uploads.services import push_eta_seconds


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
    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1).ping()
    except redis.RedisError as exc:
        stalled.append(f"Redis unreachable ({type(exc).__name__}): no send can take a rate-limit slot")
    return {
        "dispatchers": len(nodes),
        "accounts_held": sum(node.accounts for node in nodes),
        "batches_waiting": waiting_count,
        "stalled": stalled,
    }
