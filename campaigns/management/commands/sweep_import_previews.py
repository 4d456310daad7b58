"""python manage.py sweep_import_previews: delete previewed uploads never confirmed (for cron)."""

from django.core.management.base import BaseCommand

from campaigns.services import import_previews_sweep


class Command(BaseCommand):
    help = "Delete uploaded lead files previewed in the admin and never confirmed, older than the set age."

    def handle(self, *args, **opts):
        self.stdout.write(f"Removed {import_previews_sweep()} unconfirmed preview file(s).")
