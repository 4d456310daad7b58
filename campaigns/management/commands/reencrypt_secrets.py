"""python manage.py reencrypt_secrets: every stored API key under the newest LEADHUB_FIELD_ENCRYPTION_KEYS key."""

from django.core.management.base import BaseCommand, CommandError

from campaigns.services import account_secrets_reencrypt
from leadhub.fields import SecretDecryptionError


class Command(BaseCommand):
    help = (
        "Re-encrypt the stored CloudAgent API keys with the first key of LEADHUB_FIELD_ENCRYPTION_KEYS. Rotate by "
        "putting a new key first (new,old), running this, then removing the old key."
    )

    def handle(self, *args, **opts):
        try:
            count = account_secrets_reencrypt()
        except SecretDecryptionError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Re-encrypted the API keys of {count} account(s) with the newest key.")
