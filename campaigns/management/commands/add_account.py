import json
import os
import sys

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from calls.selectors import call_summary_url_for
from campaigns.services import account_upsert
from uploads.services import callback_url_for

API_KEY_ENV = "CLOUDAGENT_API_KEY"


class Command(BaseCommand):
    help = (
        "Create or update a CloudAgent account (idempotent). The API key is read from standard input "
        f"(--api-key -) or {API_KEY_ENV}; without either an existing account keeps its key."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="Display name, unique in leadhub.")
        parser.add_argument("--user-name", required=True)
        parser.add_argument(
            "--api-key",
            default=None,
            help=f"'-' reads it from standard input. A key written here is seen by every user (ps, shell history): "
            f"prefer '-' or {API_KEY_ENV}.",
        )
        parser.add_argument("--base-url", default="", help="Defaults to the domestic CloudAgent API.")
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")

    def handle(self, *args, **opts):
        try:
            account, created = account_upsert(
                name=opts["name"], user_name=opts["user_name"], api_key=self._api_key(opts), base_url=opts["base_url"]
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

    def _api_key(self, opts) -> str:
        given = opts["api_key"]
        if given == "-":
            return sys.stdin.readline().strip()
        if given is not None:
            self.stderr.write(
                f"warning: an API key on the command line is visible to other users; use --api-key - or {API_KEY_ENV}"
            )
            return given.strip()
        return os.environ.get(API_KEY_ENV, "").strip()
