"""Read-only queries for dashboards and the CLI."""

from django.db.models import Count

from campaigns.models import Campaign, CloudAgentAccount, Lead, LeadImport
from uploads.callbacks import upload_transactions_overdue
from uploads.dispatcher import lease_held
from uploads.models import UploadTransaction
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
