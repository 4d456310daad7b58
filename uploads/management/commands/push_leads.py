import json
import re
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from calls.services import leads_redial
from campaigns.models import Lead
from campaigns.selectors import CampaignLookupError, campaign_get_by_name
from uploads.services import campaign_push_new, push_summary_messages

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> timedelta:
    """4h, 90m, 2d, 30s."""
    found = _DURATION.fullmatch(text.strip().lower())
    if found is None:
        raise ValueError(f"{text!r} is not a duration such as 4h, 90m or 2d")
    return timedelta(seconds=float(found.group(1)) * _UNIT_SECONDS[found.group(2)])


class Command(BaseCommand):
    help = (
        "Push a campaign's new leads to CloudAgent, or with --redial dial again the leads whose last call ended so; "
        "answers at once, the RQ workers do the sending."
    )

    def add_arguments(self, parser):
        parser.add_argument("--campaign", required=True, help="The campaign's name.")
        parser.add_argument(
            "--redial",
            metavar="STATUS[,STATUS...]",
            help="Push again (checkDuplicate=false) the leads whose last dial or customer status is one of these, "
            "e.g. not_answered,Busy.",
        )
        parser.add_argument(
            "--older-than", metavar="DURATION", help="With --redial: last dialled before this, e.g. 4h."
        )
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")

    def handle(self, *args, **opts):
        try:
            campaign = campaign_get_by_name(opts["campaign"])
        except CampaignLookupError as exc:
            raise CommandError(str(exc)) from exc
        if opts["older_than"] and not opts["redial"]:
            raise CommandError("--older-than goes with --redial.")
        if opts["redial"]:
            outcomes = [status for status in opts["redial"].split(",") if status.strip()]
            if not outcomes:
                raise CommandError("--redial needs at least one status, e.g. not_answered,Busy.")
            try:
                older_than = duration(opts["older_than"]) if opts["older_than"] else None
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
            summary = leads_redial(
                leads=Lead.objects.filter(campaign=campaign), outcomes=outcomes, older_than=older_than
            )
        else:
            summary = campaign_push_new(campaign=campaign)
        if opts["json"]:
            fields = ("leads", "batches", "eta_seconds", "invalid", "background")
            self.stdout.write(json.dumps({name: summary.as_dict()[name] for name in fields}))
        else:
            for _level, text in push_summary_messages(summary):
                self.stdout.write(text)
