"""The outcomes panel (funnel, calls per hour, contact rate, attempts per lead) as the admin shows it on a
campaign's page and on the dashboard."""

from django.template.loader import render_to_string
from django.utils.safestring import SafeString

from calls.charts import columns_svg, funnel_svg
from calls.selectors import outcomes_by_campaign, outcomes_summary
from campaigns.models import Campaign


def outcomes_panel(*, campaign: Campaign | None = None, lead_counts: dict[str, int] | None = None) -> SafeString:
    """The funnel, calls per hour, contact rate and attempts per lead, as HTML with inline SVG charts: for one
    campaign's page, or across campaigns for the dashboard (which has counted the leads by status already)."""
    outcomes = outcomes_summary(campaign=campaign, lead_counts=lead_counts)
    scope = campaign.name if campaign is not None else "all campaigns"
    hours = outcomes["per_hour"]
    context = {
        "campaign": campaign,
        "outcomes": outcomes,
        "funnel_chart": funnel_svg(outcomes["funnel"], title=f"Lead funnel, {scope}"),
        "hours_chart": columns_svg(
            [(f"{hour:%H}:00", n) for hour, n in hours],
            title=f"Calls per hour, {scope}" + (f", the 24 hours to {hours[-1][0]:%d %b %H}:59" if hours else ""),
        ),
        "by_campaign": outcomes_by_campaign() if campaign is None else [],
    }
    return SafeString(render_to_string("admin/calls/outcomes.html", context))
