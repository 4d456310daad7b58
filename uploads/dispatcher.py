"""One dispatcher per CloudAgent account paces that account's sends.

Why a dispatcher and not one job per batch: RQ's scheduler wakes once a second and ran jobs up to 840 ms early
and 960 ms late (docs/performance.md), too coarse to hit a 12 s slot without either wasting budget or bursting. So
one RQ job per account waits in-process for the exact next slot (uploads/ratelimit.py) and sends. Its Redis
lease makes it the only sender for the account; the pacer would keep the limit even if two ran. It sleeps only
for the next slot (at most one interval) — a batch backed off for longer is left to RQ's scheduler — and it
hands over to a fresh job after LEADHUB_DISPATCH_MAX_SECONDS, so no job outlives RQ's timeout or a deploy.
"""

import logging
import threading
import time
from dataclasses import dataclass, field

import django_rq
from django.conf import settings
from django.db import close_old_connections

from campaigns.models import CloudAgentAccount
from cloudagent.client import CloudAgentClient
from uploads import queues, selectors, services
from uploads.ratelimit import account_pacer

logger = logging.getLogger("leadhub.dispatch")

# A backed-off batch due sooner than this is waited for in-process; later ones go through RQ's scheduler.
IN_PROCESS_WAIT_LIMIT = 5.0


@dataclass
class DispatchReport:
    account_id: int
    outcomes: dict[str, int] = field(default_factory=dict)
    recovered: int = 0
    busy: bool = False
    handed_over: bool = False


class _Lease:
    """The account's dispatcher lease: a Redis lock renewed by a thread while we hold it, so it lapses within
    LEADHUB_DISPATCH_LEASE_SECONDS of the process dying, and only then may another dispatcher recover."""

    def __init__(self, account_id: int):
        ttl = settings.LEADHUB_DISPATCH_LEASE_SECONDS
        self.lock = django_rq.get_connection(queues.PUSH_QUEUE).lock(
            queues.dispatch_lease_key(account_id), timeout=ttl, thread_local=False
        )
        self.ttl = ttl
        self.interval = ttl / 3
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, daemon=True, name=f"lease-{account_id}")

    def acquire(self) -> bool:
        if not self.lock.acquire(blocking=False):
            return False
        self._thread.start()
        return True

    def _renew(self) -> None:
        """Renew every third of the lease; a Redis error is retried until the lease would have lapsed, and then
        the dispatcher is told to stop (it checks `lost` before each claim), since another may take over."""
        renewed = time.monotonic()
        while not self._stop.wait(self.interval):
            try:
                self.lock.reacquire()
                renewed = time.monotonic()
            except Exception:
                logger.warning("dispatcher lease %s: renewal failed", self.lock.name, exc_info=True)
                if time.monotonic() - renewed >= self.ttl * 2 / 3:
                    self.lost.set()
                    return

    def release(self) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self.lock.release()
        except Exception:
            logger.warning("dispatcher lease %s had already lapsed", self.lock.name)


def account_dispatch(*, account_id: int, max_seconds: float | None = None) -> DispatchReport:
    """Send the account's pending batches at the pace its rate limit allows, fairly across its campaigns."""
    report = DispatchReport(account_id=account_id)
    max_seconds = settings.LEADHUB_DISPATCH_MAX_SECONDS if max_seconds is None else max_seconds
    deadline = time.monotonic() + max_seconds
    while True:
        lease = _Lease(account_id)
        if not lease.acquire():
            report.busy = True
            return report
        try:
            _dispatch_while_work(account_id, lease, deadline, report)
        finally:
            lease.release()
            close_old_connections()
        if lease.lost.is_set():  # another dispatcher may own the account now; the watchdog sees to the rest
            report.handed_over = True
            return report
        # A push that committed while we were finishing saw our lease and left its batches to us: look again
        # now that the lease is free, so no batch is stranded between two dispatchers.
        wait = selectors.next_retry_in(account_id=account_id)
        if wait is None:
            return report
        if wait > IN_PROCESS_WAIT_LIMIT or time.monotonic() >= deadline:
            queues.account_dispatch_ensure(account_id=account_id, delay=wait)
            report.handed_over = True
            return report


def _dispatch_while_work(account_id: int, lease: _Lease, deadline: float, report: DispatchReport) -> None:
    report.recovered += services.upload_transactions_recover_stale(account_id=account_id)
    account = CloudAgentAccount.objects.get(pk=account_id)
    if not account.is_active:
        logger.info("account %s is inactive: its batches wait", account)
        return
    pacer = account_pacer(account_id)
    last_served: dict[int, float] = {}
    client = CloudAgentClient.for_account(
        account,
        connect_timeout=settings.CLOUDAGENT_CONNECT_TIMEOUT,
        read_timeout=settings.CLOUDAGENT_READ_TIMEOUT,
    )
    with client:
        while time.monotonic() < deadline and not lease.lost.is_set():
            batch = services.upload_transaction_claim_next(account_id=account_id, last_served=last_served)
            if batch is None:
                wait = selectors.next_retry_in(account_id=account_id)
                if wait is None or wait > IN_PROCESS_WAIT_LIMIT:
                    return
                time.sleep(max(wait, 0.05))
                continue
            last_served[batch.campaign_id] = time.monotonic()
            outcome = services.upload_transaction_send(batch=batch, client=client, pacer=pacer)
            report.outcomes[outcome] = report.outcomes.get(outcome, 0) + 1
            if outcome == "account_refused":  # its other batches were ended; nothing more to send
                return


def push_watchdog() -> list[int]:
    """Start a dispatcher for every account with batches waiting or left `sending` and no live lease: the
    safety net for a worker killed outright. Returns the accounts it started."""
    started = []
    for account_id in selectors.accounts_with_batches_to_send():
        if not queues.lease_held(account_id):
            queues.clear_queued_marker(account_id)
            queues.account_dispatch_ensure(account_id=account_id)
            started.append(account_id)
    return started
