"""Apply callbacks that are still pending: waiting ones whose transaction is now known, ones a crashed request
left unapplied, and failed-file downloads that never reached the queue. Safe to run any time (cron)."""

from django.core.management.base import BaseCommand

from uploads.callbacks import callback_events_sweep


class Command(BaseCommand):
    help = "Apply pending CloudAgent callbacks and re-enqueue lost failed-file downloads."

    def handle(self, *args, **options):
        counts = callback_events_sweep()
        for name, count in sorted(counts.items()):
            self.stdout.write(f"{name}: {count}")
