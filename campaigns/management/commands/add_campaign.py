import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from campaigns.models import CloudAgentAccount
from campaigns.services import campaign_upsert


class Command(BaseCommand):
    help = "Create or update a campaign (idempotent). NAME is the campaign's name in CloudAgent."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--account", required=True, help="The leadhub account's display name.")
        parser.add_argument("--map", required=True, help='Column map, e.g. "PhoneNumber,Name,Priority".')
        parser.add_argument("--region", default="IN", help="Country of local numbers (ISO code).")
        parser.add_argument("--check-duplicate", action="store_true")
        parser.add_argument("--skip-existing", action="store_true", help="Send isDelete=true.")
        parser.add_argument("--start", action="store_true", help="Send action=start.")
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")

    def handle(self, *args, **opts):
        account = CloudAgentAccount.objects.filter(name=opts["account"]).first()
        if account is None:
            raise CommandError(f"No account named {opts['account']!r}; create it with add_account first.")
        try:
            campaign, created = campaign_upsert(
                name=opts["name"],
                account=account,
                column_map=opts["map"].split(","),
                phone_region=opts["region"],
                check_duplicate=opts["check_duplicate"],
                skip_existing=opts["skip_existing"],
                start_after_upload=opts["start"],
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        if opts["json"]:
            payload = {
                "id": campaign.pk,
                "name": campaign.name,
                "account": account.name,
                "created": created,
                "map": campaign.column_map,
            }
            self.stdout.write(json.dumps(payload))
        else:
            verb = "Created" if created else "Updated"
            self.stdout.write(f"{verb} campaign {campaign.name} on {account.name}: {', '.join(campaign.column_map)}")
