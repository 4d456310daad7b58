"""Reads about calls: the webhook's URL, outcome counts and charts' data, and the leads due another dial. Every
figure comes from aggregate queries (the calls table and the leads' indexed columns), never a loop over leads."""

from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Max, Q, TextField
from django.db.models.functions import Cast, TruncHour
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from calls.models import Call
from campaigns.models import Campaign, CloudAgentAccount, Lead
from cloudagent.call_summary import CUSTOMER_STATUSES, DIAL_STATUSES

ANSWERED = "answered"
DISPOSITIONS_SHOWN = 8
HOURS_SHOWN = 24


def account_for_secret(secret: str) -> CloudAgentAccount | None:
    """The account whose webhook URL this is. Every secret is compared in constant time, none skipped, so the
    response time tells a guess nothing. Its API key comes along in the same query still encrypted
    (`api_key_token`): none is decrypted to find the account, and only the service that needs it decrypts it."""
    match = None
    accounts = CloudAgentAccount.objects.only("pk", "call_summary_secret").annotate(
        api_key_token=Cast("api_key", TextField())
    )
    for account in accounts.order_by():
        if constant_time_compare(account.call_summary_secret, secret):
            match = account
    return match


def call_summary_url_for(account: CloudAgentAccount) -> str:
    """The "URL to Push" to paste into CloudAgent; like the upload callback's, its secret is the credential."""
    return settings.LEADHUB_PUBLIC_URL + reverse(
        "cloudagent-call-summary", kwargs={"secret": account.call_summary_secret}
    )


def outcome_statuses() -> list[str]:
    """The dial and customer statuses CloudAgent documents, each once, for choosing what to dial again."""
    return list(dict.fromkeys((*DIAL_STATUSES, *CUSTOMER_STATUSES)))


def outcomes_canonical(outcomes) -> list[str]:
    """Statuses as the operator typed them, in CloudAgent's spelling when it is a documented one (busy -> Busy)."""
    known = {status.lower(): status for status in outcome_statuses()}
    return list(dict.fromkeys(known.get(o.strip().lower(), o.strip()) for o in outcomes if o.strip()))


def leads_due_redial(*, leads, outcomes, older_than: timedelta | None = None):
    """Leads whose last call ended in one of `outcomes`, by its dial status or its customer status, and (with
    `older_than`) not dialled more recently than that."""
    outcomes = outcomes_canonical(outcomes)
    chosen = leads.filter(Q(last_dial_status__in=outcomes) | Q(last_customer_status__in=outcomes))
    if older_than is not None:
        chosen = chosen.filter(last_call_at__lt=timezone.now() - older_than)
    return chosen


def call_dial_status_counts(*, campaign: Campaign | None = None) -> dict[str, int]:
    """Calls by dial status, every documented status present (0 when none), then any others CloudAgent sent."""
    calls = Call.objects.all() if campaign is None else Call.objects.filter(campaign=campaign)
    counts = dict.fromkeys(DIAL_STATUSES, 0)
    for row in calls.order_by().values("dial_status").annotate(n=Count("id")):
        counts[row["dial_status"] or "unknown"] = row["n"]
    return counts


def outcomes_summary(*, campaign: Campaign | None = None, lead_counts: dict[str, int] | None = None) -> dict:
    """The funnel (imported -> uploaded -> dialled -> answered -> dispositions), contact rate, attempts per lead
    and calls per hour, for one campaign or across all. A handful of aggregate queries whatever the size; the
    costliest counts the leads by status (an index-only scan, ~170 ms at 1M leads), so a page that has those
    counts already passes them as `lead_counts`."""
    calls = Call.objects.all() if campaign is None else Call.objects.filter(campaign=campaign)
    by_status = lead_counts
    if by_status is None:
        leads = Lead.objects.all() if campaign is None else Lead.objects.filter(campaign=campaign)
        by_status = dict(leads.order_by().values("status").annotate(n=Count("id")).values_list("status", "n"))
    figures = calls.aggregate(
        calls=Count("id"),
        matched=Count("id", filter=Q(lead__isnull=False)),
        unmatched=Count("id", filter=Q(lead__isnull=True)),
        dialled=Count("lead", distinct=True),
        answered=Count("lead", distinct=True, filter=Q(dial_status=ANSWERED)),
        answered_calls=Count("id", filter=Q(dial_status=ANSWERED)),
        latest=Max("started_at"),
    )
    dispositions = list(
        calls.filter(lead__isnull=False)
        .exclude(disposition="")
        .order_by()
        .values("disposition")
        .annotate(n=Count("lead", distinct=True))
        .order_by("-n", "disposition")
        .values_list("disposition", "n")[:DISPOSITIONS_SHOWN]
    )
    imported = sum(by_status.values())
    dialled, answered = figures["dialled"], figures["answered"]
    funnel = [
        ("imported", imported),
        ("uploaded", by_status.get(Lead.Status.UPLOADED, 0)),
        ("dialled", dialled),
        ("answered", answered),
        *((f"disposition: {name}", n) for name, n in dispositions),
    ]
    return {
        "funnel": funnel,
        "calls": figures["calls"],
        "matched_calls": figures["matched"],
        "unmatched_calls": figures["unmatched"],
        "dialled_leads": dialled,
        "answered_leads": answered,
        "contact_rate": answered / dialled if dialled else None,
        "attempts_per_lead": figures["matched"] / dialled if dialled else None,
        "per_hour": _calls_per_hour(calls, figures["latest"]),
    }


def _calls_per_hour(calls, latest) -> list[tuple]:
    """Calls in each of the HOURS_SHOWN hours up to the latest call (not up to now: a campaign dialled last week
    still shows its day), every hour present, in the site's time zone."""
    if latest is None:
        return []
    end = timezone.localtime(latest).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=HOURS_SHOWN - 1)
    rows = (
        calls.filter(started_at__gte=start)
        .annotate(hour=TruncHour("started_at"))
        .order_by()
        .values("hour")
        .annotate(n=Count("id"))
        .values_list("hour", "n")
    )
    counts = {timezone.localtime(hour): n for hour, n in rows}
    return [(start + timedelta(hours=h), counts.get(start + timedelta(hours=h), 0)) for h in range(HOURS_SHOWN)]


def outcomes_by_campaign() -> list[dict]:
    """The dashboard's table: each campaign that has calls, with its dialled and answered leads and contact rate."""
    rows = (
        Call.objects.filter(campaign__isnull=False)
        .order_by()
        .values("campaign_id", "campaign__name", "campaign__account__name")
        .annotate(
            calls=Count("id"),
            matched=Count("id", filter=Q(lead__isnull=False)),
            dialled=Count("lead", distinct=True),
            answered=Count("lead", distinct=True, filter=Q(dial_status=ANSWERED)),
        )
        .order_by("campaign__account__name", "campaign__name")
    )
    return [
        {
            "campaign_id": row["campaign_id"],
            "campaign": row["campaign__name"],
            "account": row["campaign__account__name"],
            "calls": row["calls"],
            "dialled": row["dialled"],
            "answered": row["answered"],
            "contact_rate": row["answered"] / row["dialled"] if row["dialled"] else None,
            "attempts_per_lead": row["matched"] / row["dialled"] if row["dialled"] else None,
        }
        for row in rows
    ]
