import json

from django.core.management.base import BaseCommand, CommandError

from calls.selectors import call_dial_status_counts
from campaigns.selectors import CampaignLookupError, campaign_get_by_name
from uploads.selectors import status_counts


class Command(BaseCommand):
    help = "Leads by status, upload transactions by state and calls by dial status, overall or for one campaign."

    def add_arguments(self, parser):
        parser.add_argument("--campaign", help="The campaign's name.")
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")

    def handle(self, *args, **opts):
        campaign = None
        if opts["campaign"]:
            try:
                campaign = campaign_get_by_name(opts["campaign"])
            except CampaignLookupError as exc:
                raise CommandError(str(exc)) from exc
        counts = {**status_counts(campaign=campaign), "calls": call_dial_status_counts(campaign=campaign)}
        if opts["json"]:
            self.stdout.write(json.dumps(counts))
            return
        width = max(len(key) for section in ("leads", "transactions", "calls") for key in counts[section])
        for section in ("leads", "transactions", "calls"):
            self.stdout.write(section)
            for key, value in counts[section].items():
                self.stdout.write(f"  {key:<{width}} {value}")
        self.stdout.write(f"overdue callbacks  {counts['overdue']}")
