import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from calls.selectors import call_summary_url_for
from campaigns.services import account_upsert
from uploads.services import callback_url_for


class Command(BaseCommand):
    help = "Create or update a CloudAgent account (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("name", help="Display name, unique in leadhub.")
        parser.add_argument("--user-name", required=True)
        parser.add_argument("--api-key", required=True)
        parser.add_argument("--base-url", default="", help="Defaults to the domestic CloudAgent API.")
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")

    def handle(self, *args, **opts):
        try:
            account, created = account_upsert(
                name=opts["name"], user_name=opts["user_name"], api_key=opts["api_key"], base_url=opts["base_url"]
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        if opts["json"]:
            payload = {
                "id": account.pk,
                "name": account.name,
                "created": created,
                "base_url": account.base_url,
                "callback_url": callback_url_for(account),
                "cdr_url": call_summary_url_for(account),
            }
            self.stdout.write(json.dumps(payload))
        else:
            self.stdout.write(f"{'Created' if created else 'Updated'} account {account.name} ({account.base_url})")
