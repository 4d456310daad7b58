import json

from django.core.management.base import BaseCommand, CommandError

from campaigns.selectors import CampaignLookupError, campaign_get_by_name
from uploads.services import campaign_push_new, push_summary_messages


class Command(BaseCommand):
    help = "Push a campaign's new leads to CloudAgent; answers at once, the RQ workers do the sending."

    def add_arguments(self, parser):
        parser.add_argument("--campaign", required=True, help="The campaign's name.")
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")

    def handle(self, *args, **opts):
        try:
            campaign = campaign_get_by_name(opts["campaign"])
        except CampaignLookupError as exc:
            raise CommandError(str(exc)) from exc
        summary = campaign_push_new(campaign=campaign)
        if opts["json"]:
            fields = ("leads", "batches", "eta_seconds", "invalid", "background")
            self.stdout.write(json.dumps({name: summary.as_dict()[name] for name in fields}))
        else:
            for _level, text in push_summary_messages(summary):
                self.stdout.write(text)
