"""The dispatch service: one loop per process, serving every account it holds a lease on.

CloudAgent limits each account, not us, so throughput must grow with accounts, not with processes. A process
(`manage.py run_dispatcher`) owns a share of the accounts that have batches through database leases
(services, "Dispatch leases"), keeps each owned account's next step in a heap and hands the steps to a small
thread pool; no thread waits for an account's slot. The Redis pacer (uploads/ratelimit.py) keeps the limit
across every process and machine, and the database says what is unfinished, so every process rediscovers its
work from it (unfinished_work_resume) instead of from jobs kept in Redis.

The loop thread only keeps time: a heap of (when, account) entries, each account's next step. A step runs on a
small thread pool and does at most one thing for its account — claim and prepare the next batch ahead of its
slot (PREPARE_AHEAD_SECONDS: the database work must not eat into the pace), or, at the slot, send it — and
returns when the account needs the next step. No thread ever waits for an account's slot, so accounts cost a
heap entry and a little state each, and one process serves hundreds (README, "Push and dispatch"). Once a step
has sent, the writing of its outcome is queued behind every due step (PriorityPool), and the account's next step
waits for it. Accounts taken together get their first batches claimed and made ready in a few queries for all of
them (_first_batches_ready): after a push over a hundred accounts every first send is due at once.

Every LEADHUB_DISPATCH_POLL_SECONDS the loop renews its leases in one UPDATE, writes its heartbeat, and takes
unowned accounts with batches up to its share (accounts with batches / live processes). Every
LEADHUB_WATCHDOG_SECONDS (and at start) it resumes other unfinished work from the database
(unfinished_work_resume).
A database or Redis outage is waited out with back-off: the step is retried, the process never exits.
"""

import heapq
import itertools
import logging
import math
import os
import queue
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

import redis
from django.conf import settings
from django.db import DatabaseError, close_old_connections

from calls.services import call_summary_posts_sweep
from campaigns.services import lead_import_files_expire, lead_imports_resume_stopped
from cloudagent.client import CloudAgentClient
from uploads import callbacks, selectors, services
from uploads.models import UploadTransaction
from uploads.queues import WAKE_CHANNEL
from uploads.ratelimit import SlotPacer, SlotTimeout, account_pacer

logger = logging.getLogger("leadhub.dispatch")

# Claim and build a batch up to this long (and half an interval at most) before its slot: accounts pushed
# together share slot times, and building a hundred batches takes seconds of one process's CPU, which must not
# make the last of them late. A prepared batch holds its rows (~100 KB) until the slot.
PREPARE_AHEAD_SECONDS = 3.0
# Waits between retries of a step that failed on an outage (database or Redis), the last one repeating.
OUTAGE_BACKOFF = (0.5, 1, 2, 4, 8, 15)
OUTAGES = (DatabaseError, redis.RedisError)
# The pool runs the most urgent task first: steps (claims, builds, sends) before the writing of outcomes, so
# a hundred accounts' first sends are not slowed by the database work of the ones already answered.
STEP, RECORD = 0, 1


class PriorityPool:
    """A fixed set of threads that always take the most urgent queued task (lowest priority number, then the
    oldest). Shutting down runs every task already queued, and any task those queue, before the threads exit."""

    def __init__(self, threads: int, name: str) -> None:
        self._tasks: queue.PriorityQueue = queue.PriorityQueue()
        self._order = itertools.count()
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{n}", daemon=True) for n in range(threads)]
        for thread in self._threads:
            thread.start()

    def submit(self, priority: int, task: Callable, *args) -> Future:
        future: Future = Future()
        self._tasks.put((priority, next(self._order), future, task, args))
        return future

    def shutdown(self) -> None:
        for _ in self._threads:  # last in line: every real task, even one queued meanwhile, runs first
            self._tasks.put((math.inf, next(self._order), None, None, ()))
        for thread in self._threads:
            thread.join()

    def _work(self) -> None:
        while True:
            _, _, future, task, args = self._tasks.get()
            if task is None:
                return
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(task(*args))
                except BaseException as exc:  # handed to whoever reads the future, as an executor does
                    future.set_exception(exc)


@dataclass
class DispatchReport:
    """What a loop did, for `run_dispatcher --until-idle` and the tests."""

    outcomes: Counter = field(default_factory=Counter)
    recovered: int = 0
    sweeps: int = 0


@dataclass
class _Account:
    account_id: int
    held_until: float  # monotonic: past it, a lease we could not renew may have been taken over
    pacer: SlotPacer
    last_served: dict[int, float] = field(default_factory=dict)
    claimed: UploadTransaction | None = None  # claimed by us and not finished: never left `sending` behind
    prepared: services.PreparedBatch | None = None
    sent: services.SentBatch | None = None  # its request has left; its outcome is not written yet
    failures: int = 0
    releasing: bool = False
    ticket: int = -1  # the heap entry that is its next step; others are stale (the account was dropped, retaken)


class DispatchLoop:
    def __init__(
        self,
        *,
        threads: int | None = None,
        until_idle: bool = False,
        account_ids: set[int] | None = None,
        name: str | None = None,
    ) -> None:
        self.name = name or dispatch_node_name()
        self.threads = threads or settings.LEADHUB_DISPATCH_THREADS
        self.until_idle = until_idle
        self.only = account_ids  # serve only these (a foreground drain of some accounts)
        self.report = DispatchReport()
        self.stopping = threading.Event()
        self._wake = threading.Event()
        self._heap: list[tuple[float, int, int]] = []
        self._order = itertools.count()
        self._accounts: dict[int, _Account] = {}
        self._running: dict[int, Future] = {}
        self._pool = PriorityPool(self.threads, "dispatch")
        self._sweeper = ThreadPoolExecutor(1, thread_name_prefix="recovery")
        self._sweep: Future | None = None
        self._problem = ""
        self._poll_failures = 0
        self._wanted = 0
        self._poll_now = threading.Event()
        # One client for every pacer: thread-safe, it reconnects by itself after an outage; the timeouts keep a
        # hung Redis from holding a send thread.
        self._redis = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=5, socket_timeout=10)

    # --- the loop thread ----------------------------------------------------------------------------------

    def run(self) -> DispatchReport:
        logger.info("dispatcher %s: %d send threads", self.name, self.threads)
        next_poll = next_sweep = time.monotonic()
        threading.Thread(target=self._listen, daemon=True, name="dispatch-wake").start()
        try:
            while not self.stopping.is_set():
                now = time.monotonic()
                if now >= next_sweep and (self._sweep is None or self._sweep.done()):
                    self._sweep = self._sweeper.submit(self._recover)
                    next_sweep = now + settings.LEADHUB_WATCHDOG_SECONDS
                if now >= next_poll or self._poll_now.is_set():
                    self._poll_now.clear()
                    next_poll = now + self._poll()
                    if self.until_idle and self._idle():
                        break
                self._collect()
                self._start_due_steps()
                due = self._heap[0][0] if self._heap else next_poll
                self._wake.wait(max(0.0, min(due, next_poll) - time.monotonic()))
                self._wake.clear()
        finally:
            self._shutdown()
        return self.report

    def stop(self) -> None:
        self.stopping.set()
        self._wake.set()

    def _listen(self) -> None:
        """Poll at once when a push says it wrote batches (wake.py); a Redis outage only means no nudges."""
        failures = 0
        while not self.stopping.is_set():
            try:
                pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(WAKE_CHANNEL)
                failures = 0
                while not self.stopping.is_set():
                    if pubsub.get_message(timeout=1.0):
                        self._poll_now.set()
                        self._wake.set()
            except redis.RedisError:
                self.stopping.wait(OUTAGE_BACKOFF[min(failures, len(OUTAGE_BACKOFF) - 1)])
                failures += 1

    def _idle(self) -> bool:
        sweeping = self._sweep is not None and not self._sweep.done()
        return not self._wanted and not self._accounts and not self._running and not sweeping

    def _poll(self) -> float:
        """Heartbeat, renew, share, take: the loop's bookkeeping, all in the database. Returns the seconds
        until the next poll: longer after failures, so an outage is not hammered."""
        try:
            close_old_connections()
            self._renew()
            wanted = [a for a in selectors.accounts_with_batches_to_send() if self.only is None or a in self.only]
            self._wanted = len(wanted)
            # Accounts we hold count even when their last batch is out: their step has not finished yet.
            accounts = len(set(wanted) | set(self._accounts))
            nodes = 1 if self.until_idle else selectors.dispatch_nodes_live()
            share = dispatch_share(accounts=accounts, nodes=nodes)
            self._take(wanted, share)
            self._give_back_over_share(share)
            services.dispatch_node_heartbeat(name=self.name, accounts=len(self._accounts), problem=self._problem)
            self._poll_failures = 0
        except OUTAGES as exc:
            self._problem = _outage(exc)
            delay = OUTAGE_BACKOFF[min(self._poll_failures, len(OUTAGE_BACKOFF) - 1)]
            self._poll_failures += 1
            logger.warning("dispatcher %s: %s; polling again in %s s", self.name, self._problem, delay)
            return delay
        return settings.LEADHUB_DISPATCH_POLL_SECONDS

    def _renew(self) -> None:
        if not self._accounts:
            return
        kept = services.dispatch_leases_renew(holder=self.name, account_ids=self._accounts)
        held_until = time.monotonic() + settings.LEADHUB_DISPATCH_LEASE_SECONDS * 0.8
        for account_id in list(self._accounts):
            if account_id in kept:
                self._accounts[account_id].held_until = held_until
            else:
                logger.warning("dispatcher %s: lost account %s to another process", self.name, account_id)
                self._drop(account_id)

    def _take(self, wanted: list[int], share: int) -> None:
        candidates = [a for a in wanted if a not in self._accounts and a not in self._running]
        room = share - len(self._accounts)
        if not candidates or room <= 0:
            return
        taken = services.dispatch_leases_take(holder=self.name, account_ids=candidates, limit=room)
        if not taken:
            return
        # The accounts were nobody's or their holder's lease lapsed: what that holder left `sending` may have
        # reached CloudAgent and is re-sent with checkDuplicate=true.
        logger.info("dispatcher %s: took accounts %s", self.name, taken)
        self.report.recovered += services.upload_transactions_recover_stale(account_ids=taken)
        held_until = time.monotonic() + settings.LEADHUB_DISPATCH_LEASE_SECONDS * 0.8
        for account_id in taken:
            self._accounts[account_id] = _Account(
                account_id=account_id, held_until=held_until, pacer=account_pacer(account_id, self._redis)
            )
            self._schedule(account_id, 0.0)
        try:
            self._first_batches_ready(taken)
        except OUTAGES as exc:  # only a shortcut: each account's first step does the same work alone
            logger.warning("dispatcher %s: could not get the taken accounts ready together: %s", self.name, exc)
        except Exception:
            logger.exception("dispatcher %s: could not get the taken accounts ready together", self.name)
        self._start_due_steps()

    def _first_batches_ready(self, account_ids: list[int]) -> None:
        """Seed the pacers, claim a batch per account and make it ready, for all the taken accounts in a few
        queries: after a push over a hundred accounts every first send is due at once, and per-account
        bookkeeping before each would make the last of them seconds late. Should this fail half-way, each
        account's first step finds what was done (a batch claimed but not ready goes back) and goes on alone."""
        pacer = self._accounts[account_ids[0]].pacer
        history = selectors.accounts_recent_attempts(account_ids=account_ids, seconds=pacer.window_seconds * 2)
        for account_id in account_ids:
            self._accounts[account_id].pacer.seed(history.get(account_id, []))
        # Only accounts whose slot is free now: a batch made ready for a later slot would only wait in memory.
        last_useful = time.time() - pacer.interval
        free_now = [a for a in account_ids if not history.get(a) or history[a][-1] < last_useful]
        claimed = services.upload_transactions_claim_first(account_ids=free_now)
        now = time.monotonic()
        for batch in claimed:
            account = self._accounts[batch.campaign.account_id]
            account.claimed = batch
            account.last_served[batch.campaign_id] = now
        for prepared in services.upload_transactions_prepare(batches=claimed):
            self._accounts[prepared.batch.campaign.account_id].prepared = prepared

    def _give_back_over_share(self, share: int) -> None:
        """A process that joined lowers everyone's share: give back the accounts over it, idle ones first."""
        excess = len(self._accounts) - share
        for rank, account_id in enumerate(sorted(self._accounts, key=lambda a: a in self._running)):
            self._accounts[account_id].releasing = rank < excess

    def _schedule(self, account_id: int, delay: float) -> None:
        ticket = next(self._order)
        self._accounts[account_id].ticket = ticket
        heapq.heappush(self._heap, (time.monotonic() + delay, ticket, account_id))

    def _start_due_steps(self) -> None:
        now = time.monotonic()
        while self._heap and self._heap[0][0] <= now:
            _, ticket, account_id = heapq.heappop(self._heap)
            account = self._accounts.get(account_id)
            if account is not None and account.ticket == ticket and account_id not in self._running:
                self._running[account_id] = self._pool.submit(STEP, self._step_safely, account)

    def _collect(self) -> None:
        for account_id, future in list(self._running.items()):
            if not future.done():
                continue
            del self._running[account_id]
            account = self._accounts.get(account_id)
            delay = future.result()
            if isinstance(delay, Future):  # the step sent; the account waits for its outcome to be written
                self._running[account_id] = delay
                continue
            if account is None:
                continue
            if account.releasing and account.claimed is None:
                self._release(account_id)
            elif delay is None:
                self._release(account_id)
            else:
                self._schedule(account_id, delay)

    def _release(self, account_id: int) -> None:
        self._accounts.pop(account_id, None)
        try:
            services.dispatch_lease_release(holder=self.name, account_id=account_id)
        except OUTAGES:  # it lapses by itself
            logger.warning("dispatcher %s: could not release account %s", self.name, account_id, exc_info=True)

    def _drop(self, account_id: int) -> None:
        """The lease is gone: stop serving the account. A claimed batch goes back, unless its step is running (it
        then sees the account dropped and gives it back itself)."""
        account = self._accounts.pop(account_id)
        if account.claimed is not None and account_id not in self._running:
            self._give_back(account)

    def _recover(self) -> None:
        try:
            close_old_connections()
            counts = unfinished_work_resume()
            self.report.sweeps += 1
            if counts:
                logger.info("dispatcher %s: resumed unfinished work %s", self.name, counts)
        except OUTAGES as exc:
            logger.warning("dispatcher %s: the recovery sweep failed (%s); it runs again later", self.name, exc)
        except Exception:  # a bug in one sweep must not stop the loop; the next sweep tries again
            logger.exception("dispatcher %s: the recovery sweep failed", self.name)
        finally:
            self._wake.set()

    def _shutdown(self) -> None:
        self.stopping.set()  # the nudge listener too
        self._pool.shutdown()
        self._sweeper.shutdown(wait=True)
        for account in list(self._accounts.values()):
            if account.claimed is not None:
                self._give_back(account)
        try:
            close_old_connections()
            services.dispatch_node_stop(name=self.name)
        except OUTAGES:  # the leases lapse by themselves
            logger.warning("dispatcher %s: could not release its leases on the way out", self.name)

    def _give_back(self, account: _Account) -> None:
        try:
            services.upload_transaction_give_back(batch=account.claimed)
        except OUTAGES:  # it stays `sending` and is recovered when its lease lapses
            logger.warning("dispatcher %s: could not give back batch %s", self.name, account.claimed.pk)
        account.claimed = account.prepared = None

    # --- the pool threads ---------------------------------------------------------------------------------

    def _step_safely(self, account: _Account) -> float | Future | None:
        return self._guarded(account, self._step)

    def _record_safely(self, account: _Account) -> float | None:
        return self._guarded(account, self._record)

    def _guarded(self, account: _Account, work: Callable[[_Account], float | Future | None]):
        """Run a step or an outcome write; an outage (database, Redis) or a bug is waited out with back-off,
        never the end of the loop."""
        try:
            close_old_connections()
            delay = work(account)
            account.failures = 0
            self._problem = ""
            return delay
        except OUTAGES as exc:
            self._problem = _outage(exc)
            delay = OUTAGE_BACKOFF[min(account.failures, len(OUTAGE_BACKOFF) - 1)]
            account.failures += 1
            logger.warning("account %s: %s; trying again in %s s", account.account_id, self._problem, delay)
            close_old_connections()
            return delay
        except Exception:
            logger.exception("account %s: %s failed", account.account_id, work.__name__.strip("_"))
            account.failures += 1
            return OUTAGE_BACKOFF[-1]
        finally:
            self._wake.set()

    def _step(self, account: _Account) -> float | Future | None:
        """One step for one account; returns the seconds until its next step, None when it has nothing left, or,
        once it sent, the future of the writing of the outcome, which then says when the next step is."""
        account_id, pacer = account.account_id, account.pacer
        if account.claimed is not None and account.prepared is None:
            # The last step failed between claiming and finishing: the batch goes back before anything else.
            services.upload_transaction_give_back(batch=account.claimed)
            account.claimed = None
        if account.prepared is None:
            if account.releasing:
                return None
            ahead = min(PREPARE_AHEAD_SECONDS, pacer.interval / 2)
            wait = pacer.status().next_slot_in
            if wait > ahead:
                return wait - ahead
            batch = services.upload_transaction_claim_next(account_id=account_id, last_served=account.last_served)
            if batch is None:
                retry_in = selectors.next_retry_in(account_id=account_id)
                return None if retry_in is None else max(retry_in, 0.05)
            account.last_served[batch.campaign_id] = time.monotonic()
            account.claimed = batch
            account.prepared = next(iter(services.upload_transactions_prepare(batches=[batch])), None)
            if account.prepared is None:
                account.claimed = None
                self.report.outcomes["empty"] += 1
                return 0.0
            wait = pacer.status().next_slot_in
            if wait > 0:
                return wait
        if time.monotonic() >= account.held_until or account_id not in self._accounts:
            # Our lease could not be renewed lately: another process may own the account by now.
            self._give_back(account)
            return None if account_id not in self._accounts else settings.LEADHUB_DISPATCH_POLL_SECONDS
        prepared = account.prepared
        client = CloudAgentClient.for_account(
            prepared.batch.campaign.account,
            connect_timeout=settings.CLOUDAGENT_CONNECT_TIMEOUT,
            read_timeout=settings.CLOUDAGENT_READ_TIMEOUT,
        )
        with client:
            try:
                account.sent = services.upload_transaction_send(prepared=prepared, client=client, pacer=pacer)
            except SlotTimeout as slot:  # another process took the slot (a lease changing hands)
                return slot.wait
            except BaseException:
                # The request may have left: never send these rows again from memory. The next step gives the
                # batch back, as ambiguous if its grant was written.
                account.prepared = None
                raise
        account.prepared = None
        return self._pool.submit(RECORD, self._record_safely, account)

    def _record(self, account: _Account) -> float | None:
        """Write a sent batch's outcome (retried through a database blip), then say when the account's next step
        is. Should the database stay away, the batch stays claimed and goes back as ambiguous at the next step."""
        sent, account.sent = account.sent, None
        outcome = services.upload_transaction_record(sent=sent)
        account.claimed = None
        self.report.outcomes[outcome] += 1
        if outcome == "account_refused":  # its other batches were ended: nothing more to send
            return None
        pacer = account.pacer
        return max(0.0, pacer.status().next_slot_in - min(PREPARE_AHEAD_SECONDS, pacer.interval / 2))


def _outage(exc: Exception) -> str:
    what = "Redis" if isinstance(exc, redis.RedisError) else "the database"
    return f"{what} unreachable: {type(exc).__name__}: {str(exc)[:200]}"


def dispatch_node_name() -> str:
    """Unique per process start: a restarted process must not inherit the leases of the one it replaces."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def dispatch_share(*, accounts: int, nodes: int) -> int:
    """How many accounts one process takes: an even share, so adding processes spreads the accounts."""
    return math.ceil(accounts / max(nodes, 1))


def unfinished_work_resume() -> dict[str, int]:
    """Unfinished work, rediscovered from the database at start and every LEADHUB_WATCHDOG_SECONDS, so nothing
    waits on a job that lived only in Redis: push requests not cut into batches, callbacks waiting for their
    transaction or left half-applied, failed-file downloads and background imports whose job is gone, call
    summaries a request stored but could not apply; and the files of imports over for LEADHUB_IMPORT_FILES_KEEP_DAYS
    are deleted. (Batches need nothing here: the loop finds them at every
    poll.) Returns what it did, nonzero counts only."""
    # A callback or download that should have finished by the last sweep is not coming by itself.
    overdue = timedelta(seconds=settings.LEADHUB_WATCHDOG_SECONDS)
    counts = callbacks.callback_events_sweep(received_before=overdue, failed_files_after=overdue)
    counts.pop("still_waiting", None)
    counts["push_requests_recovered"] = services.push_requests_recover()
    counts["imports_resumed"] = lead_imports_resume_stopped(older_than=overdue)
    if settings.LEADHUB_IMPORT_FILES_KEEP_DAYS:
        keep = timedelta(days=settings.LEADHUB_IMPORT_FILES_KEEP_DAYS)
        counts["import_files_deleted"] = lead_import_files_expire(older_than=keep)
    counts["dead_dispatchers_forgotten"] = services.dispatch_nodes_forget_dead()
    applied = call_summary_posts_sweep(received_before=overdue)
    counts["call_summaries_applied"] = sum(n for state, n in applied.items() if state != "errors")
    return {name: count for name, count in counts.items() if count}
