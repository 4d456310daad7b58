"""The CloudAgent pacer against a real Redis: its invariants under concurrent threads and processes, and its API.

Every time compared here is Redis TIME in microseconds, the clock the pacer decides by, so no assertion depends on
how fast this machine runs.
"""

import bisect
import math
import multiprocessing
import threading
import time

import pytest
import redis
from django.conf import settings

from tests.fixtures.ratelimit import recording_attempts
from uploads.ratelimit import PacerStatus, SlotPacer, SlotTimeout, account_pacer

N, W = 5, 1.0
# As the pacer rounds them (up) for its default margin.
INTERVAL_US = math.ceil(W / N * (1 + 0.02) * 1e6)
SPAN_US = math.ceil(W * (1 + 0.02) * 1e6)
RUN_SECONDS = 3.0


def pacer(conn, key="test:pacer", *, n=N, w=W) -> SlotPacer:
    return SlotPacer(conn, key, requests_per_window=n, window_seconds=w)


def redis_time(conn) -> int:
    seconds, micros = conn.time()
    return seconds * 1_000_000 + micros


def hammer(slots: SlotPacer, deadline: float) -> None:
    """Take slots back to back until the next one would fall after the (monotonic) deadline."""
    while True:
        try:
            slots.acquire(timeout=deadline - time.monotonic())
        except SlotTimeout:
            return


def hammer_in_process(url: str, key: str, deadline: float, out) -> None:
    with recording_attempts() as attempts:
        hammer(pacer(redis.Redis.from_url(url), key), deadline)
    out.put(attempts)


def earliest_slot(grants: list[int], now: int) -> int:
    """The rule the pacer promises, restated: one interval after the last grant, and fewer than N in the window."""
    recent = grants[bisect.bisect_right(grants, now - SPAN_US) : bisect.bisect_right(grants, now)]
    at = now
    if recent:
        at = max(at, recent[-1] + INTERVAL_US)
    if len(recent) >= N:
        at = max(at, recent[-N] + SPAN_US)
    return at


def test_concurrent_threads_and_processes_never_exceed_the_limit_and_waste_no_slot(redis_conn, pacer_attempts):
    key = "test:pacer:hammered"
    deadline = time.monotonic() + RUN_SECONDS
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    processes = [
        context.Process(target=hammer_in_process, args=(settings.REDIS_URL, key, deadline, out)) for _ in range(4)
    ]
    for process in processes:
        process.start()
    shared = pacer(redis_conn, key)
    threads = [threading.Thread(target=hammer, args=(shared, deadline)) for _ in range(8)]
    for thread in threads:
        thread.start()
    from_processes = [out.get(timeout=RUN_SECONDS + 30) for _ in processes]
    for worker in [*threads, *processes]:
        worker.join(timeout=30)
    assert [process.exitcode for process in processes] == [0] * 4
    assert all(from_processes), "every process took part"

    attempts = [*pacer_attempts, *(attempt for attempts in from_processes for attempt in attempts)]
    grants = sorted(attempt.at for attempt in attempts if attempt.wait == 0)
    assert len(grants) > N

    # The invariant: consecutive grants an interval apart, and no N + 1 grants within any W seconds.
    assert min(later - earlier for earlier, later in zip(grants, grants[1:], strict=False)) >= W / N * 1.02e6
    assert min(later - earlier for earlier, later in zip(grants, grants[N:], strict=False)) > W * 1e6

    # Saturation, the pacer's share of it, exactly: a refused caller is told the earliest slot, never a later one.
    # How soon a caller comes back after that depends on this machine, so the count of grants is held only to half
    # the ceiling (the average gap within two intervals): that fails only if the pacer loses slots.
    for attempt in attempts:
        if attempt.wait:
            assert attempt.at + attempt.wait == earliest_slot(grants, attempt.at)
    assert (len(grants) - 1) * 2 * INTERVAL_US >= grants[-1] - grants[0]

    # The log holds the last window's grants, one member each.
    logged = redis_conn.zrange(f"{key}:grants", 0, -1, withscores=True)
    assert [int(score) for _, score in logged] == [g for g in grants if g > grants[-1] - SPAN_US]
    sequences = [int(member.split(b"-")[1]) for member, _ in logged]
    assert sequences == list(range(len(grants) - len(logged) + 1, len(grants) + 1))


@pytest.mark.smoke
def test_the_first_slot_is_free_and_the_next_one_an_interval_later(redis_conn, pacer_attempts):
    slots = pacer(redis_conn)
    assert slots.interval == pytest.approx(0.204)
    assert slots.try_acquire() == 0.0
    wait = slots.try_acquire()
    assert 0 < wait <= slots.interval
    granted, refused = pacer_attempts
    assert refused.at + refused.wait == granted.at + INTERVAL_US


def test_the_window_holds_grants_made_under_a_faster_rule(redis_conn, pacer_attempts):
    """A deploy that lowers the limit must not send a burst: the log still counts the old rule's grants."""
    faster, stricter = pacer(redis_conn, n=10, w=0.5), pacer(redis_conn, n=2, w=0.5)
    faster.acquire()
    faster.acquire()
    time.sleep(0.4)  # late in the window, where a window check too short would let a third grant through
    stricter.acquire()
    first, second, third = (attempt.at for attempt in pacer_attempts if attempt.wait == 0)
    window_end = first + math.ceil(0.5 * (1 + 0.02) * 1e6)
    assert third >= window_end > second + stricter.interval * 1e6
    assert all(a.at + a.wait == window_end for a in pacer_attempts if a.wait and a.at > second)


def test_push_back_delays_the_next_slot_and_never_shortens_a_bound(redis_conn, pacer_attempts):
    slots = pacer(redis_conn)
    slots.try_acquire()

    before = redis_time(redis_conn)
    slots.push_back(5)
    after = redis_time(redis_conn)
    slots.try_acquire()
    bound = pacer_attempts[-1].at + pacer_attempts[-1].wait
    assert before + 5_000_000 <= bound <= after + 5_000_000

    slots.push_back(1)
    slots.try_acquire()
    assert pacer_attempts[-1].at + pacer_attempts[-1].wait == bound

    before = redis_time(redis_conn)
    slots.push_back(10)
    after = redis_time(redis_conn)
    slots.try_acquire()
    assert before + 10_000_000 <= pacer_attempts[-1].at + pacer_attempts[-1].wait <= after + 10_000_000


def test_a_push_back_outlives_the_window_and_holds_an_idle_key(redis_conn):
    slots = pacer(redis_conn, w=0.1)
    slots.push_back(600)
    assert redis_conn.pttl(slots.key) > 599_000
    assert slots.try_acquire() > 599


@pytest.mark.smoke
def test_status_reports_the_budget_without_writing(redis_conn):
    slots = pacer(redis_conn)
    assert slots.status() == PacerStatus(used=0, limit=5, window_seconds=1.0, next_slot_in=0.0, interval=slots.interval)
    assert redis_conn.keys() == []

    slots.acquire()
    slots.acquire()
    status = slots.status()
    assert status.used == 2
    assert 0 < status.next_slot_in <= slots.interval

    before = redis_time(redis_conn)
    slots.push_back(30)
    status = slots.status()
    elapsed = redis_time(redis_conn) - before
    assert 30 - elapsed / 1e6 <= status.next_slot_in <= 30
    assert status.used == 2


def test_the_log_keeps_one_window_and_the_keys_expire_after_it(redis_conn):
    slots = pacer(redis_conn, n=2, w=0.1)
    for _ in range(4):
        slots.acquire()
        assert redis_conn.zcard(f"{slots.key}:grants") <= 2
    time.sleep(0.2)  # the keys live a tenth longer than the window of 0.102 s
    assert redis_conn.keys() == []
    assert slots.status().used == 0


def test_the_keys_outlive_the_window_of_the_last_grant(redis_conn):
    slots = pacer(redis_conn)
    slots.acquire()
    last_grant = redis_conn.zrange(f"{slots.key}:grants", -1, -1, withscores=True)[0][1]
    for key in (slots.key, f"{slots.key}:grants"):
        assert redis_conn.pexpiretime(key) * 1000 - last_grant > SPAN_US


def test_two_keys_are_independent(redis_conn):
    first, second = pacer(redis_conn, "test:pacer:1"), pacer(redis_conn, "test:pacer:2")
    assert first.try_acquire() == 0.0
    second.push_back(60)
    assert 0 < first.try_acquire() <= first.interval
    assert second.try_acquire() > 59

    first.reset()
    assert first.try_acquire() == 0.0
    assert second.try_acquire() > 59


def test_acquire_sleeps_only_while_the_next_slot_is_ahead(redis_conn):
    slots = pacer(redis_conn, w=0.5)
    sleeps = []
    slots.acquire(sleep=sleeps.append)
    assert sleeps == [], "the first slot is free"

    def sleep(seconds):
        sleeps.append(seconds)
        time.sleep(seconds)

    slots.acquire(sleep=sleep)
    assert sleeps and all(0 < seconds <= slots.interval for seconds in sleeps)
    assert slots.status().used == 2


def test_acquire_raises_slot_timeout_without_sleeping_towards_a_slot_beyond_it(redis_conn):
    slots = pacer(redis_conn, n=1, w=60)
    slots.acquire()
    with pytest.raises(SlotTimeout):
        slots.acquire(timeout=1, sleep=pytest.fail)
    slots.reset()
    slots.push_back(30)
    with pytest.raises(SlotTimeout):
        slots.acquire(timeout=10, sleep=pytest.fail)
    assert slots.status().used == 0


def test_acquire_within_the_timeout_takes_the_slot(redis_conn):
    slots = pacer(redis_conn)
    slots.acquire()
    slots.acquire(timeout=5)
    assert slots.status().used == 2


def test_reset_forgets_grants_and_push_backs(redis_conn):
    slots = pacer(redis_conn)
    slots.acquire()
    slots.push_back(60)
    slots.reset()
    assert redis_conn.keys() == []
    assert slots.try_acquire() == 0.0


@pytest.mark.parametrize("rule", [{"n": 0}, {"w": 0}, {"w": -1}])
def test_a_pacer_needs_a_positive_rule(redis_conn, rule):
    with pytest.raises(ValueError):
        pacer(redis_conn, **rule)


def test_account_pacer_reads_the_settings_and_uses_rqs_redis(settings, redis_conn):
    settings.CLOUDAGENT_REQUESTS_PER_WINDOW = 5
    settings.CLOUDAGENT_WINDOW_SECONDS = 60
    slots = account_pacer(7)
    assert slots.key == "leadhub:pacer:account:7"
    assert slots.interval == pytest.approx(12.24)
    assert slots.try_acquire() == 0.0
    assert redis_conn.exists("leadhub:pacer:account:7"), "on RQ's Redis, the database the tests own"

    settings.CLOUDAGENT_RATE_MARGIN = 0.05
    slots = account_pacer(8, redis_conn)
    assert slots.redis is redis_conn
    assert slots.margin == 0.05


def test_a_short_window_keeps_an_absolute_slack_for_jitter(settings, redis_conn):
    settings.CLOUDAGENT_REQUESTS_PER_WINDOW = 5
    settings.CLOUDAGENT_WINDOW_SECONDS = 6
    settings.CLOUDAGENT_RATE_MARGIN = 0.02
    settings.CLOUDAGENT_RATE_MIN_SLACK_SECONDS = 0.3
    slots = account_pacer(9, redis_conn)
    # five intervals span the window plus the slack, not plus 2% of it (0.12 s)
    assert slots.interval * 5 == pytest.approx(6.3)
