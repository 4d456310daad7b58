"""The uploads app's RQ queues and every job it enqueues, named by dotted path so nothing imports jobs.py back;
and the nudge a push sends the dispatch processes (uploads/dispatcher.py) over Redis pub/sub.

Sending itself is no job: the dispatch service finds batches in the database, so nothing a push needs lives
only in Redis.
"""

import functools
import logging

import django_rq
import redis
import redis.backoff
import redis.retry
from django.conf import settings
from rq import Retry
from rq.job import JobStatus

logger = logging.getLogger("leadhub.dispatch")

DEFAULT_QUEUE = "default"
CALLBACKS_QUEUE = "callbacks"

LEADS_PUSH_JOB = "uploads.jobs.leads_push_job"
FAILED_FILE_FETCH_JOB = "uploads.jobs.failed_file_fetch_job"

# RQ retries a failed-file download on these intervals (the last one repeating): the attempts span more than
# the URL's 24 h, so the last attempt always finds the deadline passed and settles the leads as unconfirmed.
FAILED_FILE_RETRY = Retry(max=30, interval=[30, 60, 120, 300, 900, 1800, 3600])
PENDING_JOB_STATUSES = (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED)
LEADS_PUSH_JOB_TIMEOUT = 3 * 3600


def leads_push_enqueue(*, push_request_id: int) -> None:
    """Batching a big selection may take minutes: the job reads the PushRequest row, never a pickled query."""
    django_rq.get_queue(DEFAULT_QUEUE).enqueue(LEADS_PUSH_JOB, push_request_id, job_timeout=LEADS_PUSH_JOB_TIMEOUT)


WAKE_CHANNEL = "leadhub:dispatch:wake"


def dispatch_wake() -> None:
    """Nudge every dispatch process that new batches exist, so a push starts sending at once rather than at the
    next poll. Only a shortcut: a nudge lost with Redis costs one poll (LEADHUB_DISPATCH_POLL_SECONDS), since the
    database, not the message, holds the batches."""
    try:
        redis_fail_fast().publish(WAKE_CHANNEL, "1")
    except redis.RedisError:
        logger.warning("could not nudge the dispatchers; they find the batches at their next poll", exc_info=True)


def redis_problem() -> str:
    """Why Redis does not answer (the error's name), or "" when it does: for the dispatch service's health."""
    try:
        redis_fail_fast().ping()
    except redis.RedisError as exc:
        return type(exc).__name__
    return ""


def redis_fail_fast() -> redis.Redis:
    """A client that gives up at once when Redis is down, for what goes on without it: nudges, health, the ETA
    of a push and the pages' budget figures. (redis-py's default retries take ~4.5 s per call to a Redis that
    is down: a push over a hundred accounts would wait minutes for its ETA.)"""
    return _fail_fast_client(settings.REDIS_URL)


@functools.cache
def _fail_fast_client(url: str) -> redis.Redis:
    no_retry = redis.retry.Retry(redis.backoff.NoBackoff(), 0)
    return redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1, retry=no_retry)


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
