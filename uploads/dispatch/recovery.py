"""Unfinished work, rediscovered from the database: every dispatch process runs this at start and every
LEADHUB_WATCHDOG_SECONDS, so nothing waits on a job that lived only in Redis. Batches need nothing here: the
dispatch loop finds them in the database at every poll (leases.accounts_with_batches)."""

from datetime import timedelta

from django.conf import settings

from campaigns.services import lead_imports_resume_stopped
from uploads.callbacks import callback_events_sweep
from uploads.dispatch import leases


def unfinished_work_resume() -> dict[str, int]:
    """Callbacks waiting for their transaction or left half-applied, failed-file downloads whose job is gone,
    background imports whose job is gone; returns what it did (nonzero counts only)."""
    # A callback or download that should have finished by the last sweep is not coming by itself.
    overdue = timedelta(seconds=settings.LEADHUB_WATCHDOG_SECONDS)
    counts = callback_events_sweep(received_before=overdue, failed_files_after=overdue)
    counts.pop("still_waiting", None)
    counts["imports_resumed"] = lead_imports_resume_stopped(older_than=overdue)
    counts["dead_dispatchers_forgotten"] = leases.dispatch_nodes_forget_dead()
    return {name: count for name, count in counts.items() if count}
