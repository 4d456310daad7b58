"""python manage.py rotate_callback_secret ACCOUNT: a new callback URL; the old one answers for a grace period."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from campaigns.models import CloudAgentAccount
from campaigns.services import account_callback_secret_rotate


class Command(BaseCommand):
    help = (
        "Give an account a new callback URL; the old one keeps answering for CLOUDAGENT_CALLBACK_SECRET_GRACE_SECONDS."
    )

    def add_arguments(self, parser):
        parser.add_argument("account", help="The account's display name.")

    def handle(self, *args, **opts):
        account_id = CloudAgentAccount.objects.filter(name=opts["account"]).values_list("pk", flat=True).first()
        if account_id is None:
            raise CommandError(f"unknown account {opts['account']!r}")
        account_callback_secret_rotate(account_id=account_id)
        hours = settings.CLOUDAGENT_CALLBACK_SECRET_GRACE_SECONDS / 3600
        # The new URL is not printed: it is a credential, and terminals and CI logs are kept. The admin shows it.
        self.stdout.write(
            f"Rotated; the old callback URL answers for {hours:g} more hour(s). See the new one in the admin."
        )
