"""The uploads app's RQ queues and every job it enqueues, named by dotted path so nothing imports jobs.py back.

Also the Redis markers that keep enqueuing idempotent (a burst of pushes, or the watchdog's every tick, must not
pile up jobs) and the dispatcher's lease key, which selectors read to tell whether an account is being served.
"""

from datetime import timedelta

import django_rq
from django.conf import settings
from rq import Retry
from rq.job import JobStatus

DEFAULT_QUEUE = "default"
PUSH_QUEUE = "push"
CALLBACKS_QUEUE = "callbacks"

LEADS_PUSH_JOB = "uploads.jobs.leads_push_job"
ACCOUNT_DISPATCH_JOB = "uploads.jobs.account_dispatch_job"
PUSH_WATCHDOG_JOB = "uploads.jobs.push_watchdog_job"
FAILED_FILE_FETCH_JOB = "uploads.jobs.failed_file_fetch_job"

# RQ retries a failed-file download on these intervals (the last one repeating): the attempts span more than
# the URL's 24 h, so the last attempt always finds the deadline passed and settles the leads as unconfirmed.
FAILED_FILE_RETRY = Retry(max=30, interval=[30, 60, 120, 300, 900, 1800, 3600])
PENDING_JOB_STATUSES = (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED)
WATCHDOG_MARKER = "leadhub:watchdog:scheduled"


def _redis():
    return django_rq.get_connection(PUSH_QUEUE)


def dispatch_lease_key(account_id: int) -> str:
    return f"leadhub:dispatch:account:{account_id}"


def lease_held(account_id: int) -> bool:
    return bool(_redis().exists(dispatch_lease_key(account_id)))


LEADS_PUSH_JOB_TIMEOUT = 3 * 3600


def leads_push_enqueue(*, push_request_id: int) -> None:
    """Batching a big selection may take minutes: the job reads the PushRequest row, never a pickled query."""
    django_rq.get_queue(DEFAULT_QUEUE).enqueue(LEADS_PUSH_JOB, push_request_id, job_timeout=LEADS_PUSH_JOB_TIMEOUT)


def account_dispatch_ensure(*, account_id: int, delay: float = 0.0) -> None:
    """Make sure a dispatcher will run for the account: enqueue one unless one holds the lease or is already
    queued, or schedule one `delay` seconds out unless one is already scheduled by then (marker keys keep a burst
    of pushes, or the watchdog's every tick during a long back-off, from piling up jobs)."""
    redis = _redis()
    queue = django_rq.get_queue(PUSH_QUEUE)
    if delay > 0:
        if redis.set(f"leadhub:dispatch:scheduled:{account_id}", "1", nx=True, ex=max(1, int(delay))):
            queue.enqueue_in(timedelta(seconds=delay), ACCOUNT_DISPATCH_JOB, account_id)
        return
    if lease_held(account_id):
        return
    if redis.set(_queued_marker(account_id), "1", nx=True, ex=max(5, int(settings.LEADHUB_DISPATCH_LEASE_SECONDS))):
        queue.enqueue(ACCOUNT_DISPATCH_JOB, account_id)


def _queued_marker(account_id: int) -> str:
    return f"leadhub:dispatch:queued:{account_id}"


def clear_queued_marker(account_id: int) -> None:
    _redis().delete(_queued_marker(account_id))


def watchdog_ensure() -> None:
    """Keep one watchdog run scheduled while batches are unfinished; the marker outlives a lost run by little."""
    every = settings.LEADHUB_WATCHDOG_SECONDS
    if _redis().set(WATCHDOG_MARKER, "1", nx=True, ex=max(1, int(every * 3))):
        django_rq.get_queue(DEFAULT_QUEUE).enqueue_in(timedelta(seconds=every), PUSH_WATCHDOG_JOB)


def clear_watchdog_marker() -> None:
    _redis().delete(WATCHDOG_MARKER)


def failed_file_fetch_enqueue(*, upload_transaction_id: int) -> bool:
    """One download job per transaction: its id is fixed, and a job still queued, running or waiting for a
    retry is left alone, so a sweep run while it backs off does not start a second chain of retries."""
    queue = django_rq.get_queue(CALLBACKS_QUEUE)
    job_id = f"failed-file-fetch-{upload_transaction_id}"
    existing = queue.fetch_job(job_id)
    if existing is not None and existing.get_status() in PENDING_JOB_STATUSES:
        return False
    queue.enqueue(FAILED_FILE_FETCH_JOB, upload_transaction_id, job_id=job_id, retry=FAILED_FILE_RETRY)
    return True
