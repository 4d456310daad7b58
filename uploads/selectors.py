"""Read-only queries for dashboards and the CLI."""

from django.db.models import Count

from campaigns.models import Campaign, Lead
from uploads.models import UploadTransaction


def status_counts(*, campaign: Campaign | None = None) -> dict:
    """Leads by status and transactions by state, every key present (0 when none), for scripts to rely on."""
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
    return {"leads": lead_counts, "transactions": state_counts}
