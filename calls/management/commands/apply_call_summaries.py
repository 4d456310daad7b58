"""Apply call summaries a request stored but could not apply (it broke on our side or died midway). Safe to run
any time (cron); every dispatch process runs the same sweep (uploads/dispatcher.py, unfinished_work_resume)."""

from django.core.management.base import BaseCommand

from calls.services import call_summary_posts_sweep


class Command(BaseCommand):
    help = "Apply stored CloudAgent call summaries that are still waiting."

    def handle(self, *args, **options):
        counts = call_summary_posts_sweep()
        for name, count in sorted(counts.items()):
            self.stdout.write(f"{name}: {count}")
        if not counts:
            self.stdout.write("nothing to apply")
