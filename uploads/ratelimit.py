"""A distributed pacer for CloudAgent requests: evenly spaced slots per account, shared through Redis.

CloudAgent allows N requests per W seconds per account and does not say whether the window is fixed or sliding,
so every window of W seconds must hold at most N requests. Fixed windows, GCRA with a burst and exact sliding logs
all let too many through once arrivals jitter; sends spaced evenly at 1.02 x W/N with no burst did not
(docs/performance.md, "Push pacing"). So a slot is granted only when the last grant is at least one interval old,
and, belt and braces, when the margin-widened window holds fewer than N grants.

Each decision is one Lua script that reads the clock with Redis `TIME`: workers on several machines share one clock
and no grant can slip between a read and a write. Every grant counts as a request attempt, because a request that
timed out may still have counted at the provider. Every attempt is logged at DEBUG with its Redis time, so a
"too many requests" answer can be matched against our grants.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import redis
from django.conf import settings

logger = logging.getLogger("leadhub.ratelimit")

# Times are integer microseconds of Redis TIME: exact in a Lua (double) number. Lua numbers are written with %d,
# because Lua's own tostring keeps only 14 significant digits.
_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
"""

_NEXT_SLOT = """
local function next_slot(state_key, grants_key, interval, span, limit)
    local at = now
    local hold = tonumber(redis.call('HGET', state_key, 'hold'))
    if hold and hold > at then
        at = hold
    end
    local recent = redis.call('ZRANGEBYSCORE', grants_key, string.format('(%d', now - span), '+inf', 'WITHSCORES')
    local count = #recent / 2
    if count > 0 then
        at = math.max(at, tonumber(recent[#recent]) + interval)
    end
    if count >= limit then
        -- the grant that must leave the window before one more fits in it
        at = math.max(at, tonumber(recent[2 * (count - limit) + 2]) + span)
    end
    return at, count
end
"""

_TRY_ACQUIRE = (
    _NOW
    + _NEXT_SLOT
    + """
local span, ttl = tonumber(ARGV[2]), tonumber(ARGV[4])
if ARGV[5] == '1' and redis.call('EXISTS', KEYS[1]) == 0 then
    -- no grant within the window, or Redis lost its state: the caller seeds it from the database first
    return {-1, now}
end
local at = next_slot(KEYS[1], KEYS[2], tonumber(ARGV[1]), span, tonumber(ARGV[3]))
if at > now then
    return {at - now, now}
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - span)
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('ZADD', KEYS[2], now, string.format('%d-%d', now, seq))
-- any hold has passed, so the state may expire with the log
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return {0, now}
"""
)

_SEED = (
    _NOW
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then
    return 0
end
local span, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'seq', 0)
for i = 3, #ARGV do
    local at = tonumber(ARGV[i])
    if at > now - span then
        redis.call('ZADD', KEYS[2], at, string.format('%d-seed', at))
    end
end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return 1
"""
)

_STATUS = (
    _NOW
    + _NEXT_SLOT
    + """
local at, count = next_slot(KEYS[1], KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))
return {count, at - now}
"""
)

_PUSH_BACK = (
    _NOW
    + """
local bound = math.max(now + tonumber(ARGV[1]), tonumber(redis.call('HGET', KEYS[1], 'hold')) or 0)
redis.call('HSET', KEYS[1], 'hold', string.format('%d', bound))
-- the hold must outlive its bound, and a grant's state its window
redis.call('PEXPIRE', KEYS[1], math.ceil((bound - now) / 1000) + tonumber(ARGV[2]))
"""
)


class SlotTimeout(Exception):
    """The next slot lies beyond the caller's timeout; `wait` is the seconds until it comes."""

    def __init__(self, message: str, *, wait: float = 0.0) -> None:
        super().__init__(message)
        self.wait = wait


@dataclass(frozen=True)
class PacerStatus:
    """`used` counts grants in the window the pacer enforces (W widened by the margin)."""

    used: int
    limit: int
    window_seconds: float
    next_slot_in: float
    interval: float


class SlotPacer:
    """Evenly spaced request slots for one key (one CloudAgent account), shared by every process through Redis.

    State: a hash at `key` (a sequence that keeps grant members unique, and the push-back bound) and the grant log,
    a sorted set at `key:grants` scored by Redis time. Both expire a little after the window, so an idle account
    leaves nothing behind.
    """

    def __init__(
        self,
        redis: redis.Redis,
        key: str,
        *,
        requests_per_window: int,
        window_seconds: float,
        margin: float = 0.02,
    ) -> None:
        if requests_per_window < 1 or window_seconds <= 0 or margin < 0:
            raise ValueError("need requests_per_window >= 1, window_seconds > 0 and margin >= 0")
        self.redis = redis
        self.key = key
        self.requests_per_window = requests_per_window
        self.window_seconds = window_seconds
        self.margin = margin
        self._keys = [key, f"{key}:grants"]
        span = window_seconds * (1 + margin)
        # Rounded up, so rounding can only make the pacer stricter.
        self._rule = [math.ceil(self.interval * 1e6), math.ceil(span * 1e6), requests_per_window]
        # A tenth over the window: the keys outlive every grant that still counts, then go.
        self._ttl_ms = math.ceil(span * 1100)
        self._try_acquire = redis.register_script(_TRY_ACQUIRE)
        self._seed = redis.register_script(_SEED)
        self._status = redis.register_script(_STATUS)
        self._push_back = redis.register_script(_PUSH_BACK)

    @property
    def interval(self) -> float:
        return self.window_seconds / self.requests_per_window * (1 + self.margin)

    def try_acquire(self) -> float:
        """Take a slot now and return 0.0, or return the seconds (> 0) until the earliest one could be taken.

        Call it right before each HTTP request: the grant is an attempt whether or not the request succeeds.
        """
        wait_us, now_us = self._try_acquire(keys=self._keys, args=[*self._rule, self._ttl_ms, "0"])
        wait = wait_us / 1e6
        logger.debug("pacer %s: Redis time %.6f, wait %.6f s", self.key, now_us / 1e6, wait)
        return wait

    def take(self, *, history: Callable[[], Iterable[float]]) -> tuple[float, float]:
        """Like try_acquire, and returns (wait, Redis time of the decision) so the caller can record the grant.

        When the pacer holds no state for the key (no grant within the window, or Redis came back empty), it is
        first seeded with `history()` — the Unix times of the account's recent attempts, as the database knows
        them — so the first sends after a Redis loss still respect the window instead of bursting."""
        args = [*self._rule, self._ttl_ms]
        wait_us, now_us = self._try_acquire(keys=self._keys, args=[*args, "1"])
        if wait_us < 0:
            self.seed(history())
            wait_us, now_us = self._try_acquire(keys=self._keys, args=[*args, "0"])
        wait = wait_us / 1e6
        logger.debug("pacer %s: Redis time %.6f, wait %.6f s", self.key, now_us / 1e6, wait)
        return wait, now_us / 1e6

    def seed(self, moments: Iterable[float]) -> None:
        """Give a pacer that holds no state for its key the account's recent attempts (Unix times), so it counts
        them; a pacer that has state keeps it. A dispatcher taking many accounts seeds them all from one query
        instead of one per account at its first send."""
        seeds = [math.floor(moment * 1e6) for moment in moments]
        if self._seed(keys=self._keys, args=[self._rule[1], self._ttl_ms, *seeds]) and seeds:
            logger.info("pacer %s: seeded with %d recent attempt(s) from the database", self.key, len(seeds))

    def acquire(
        self,
        *,
        timeout: float | None = None,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        """Wait in-process for a slot.

        Raises SlotTimeout as soon as the next slot lies beyond the timeout, rather than sleeping towards it.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while wait := self.try_acquire():
            if deadline is not None and time.monotonic() + wait > deadline:
                raise SlotTimeout(
                    f"pacer {self.key}: next slot in {wait:.3f} s, beyond the {timeout} s timeout", wait=wait
                )
            sleep(wait)

    def push_back(self, seconds: float) -> None:
        """CloudAgent answered "too many requests": grant nothing before now + seconds.

        A later bound already set stays: two workers reporting the same answer must not shorten each other's wait.
        """
        self._push_back(keys=self._keys[:1], args=[math.ceil(max(seconds, 0) * 1e6), self._ttl_ms])

    def status(self) -> PacerStatus:
        """Read-only, for the admin's budget display."""
        used, wait_us = self._status(keys=self._keys, args=self._rule)
        return PacerStatus(
            used=used,
            limit=self.requests_per_window,
            window_seconds=self.window_seconds,
            next_slot_in=wait_us / 1e6,
            interval=self.interval,
        )

    def reset(self) -> None:
        self.redis.delete(*self._keys)


def account_pacer(account_id: int, redis_conn: redis.Redis | None = None) -> SlotPacer:
    """The pacer every worker shares for one CloudAgent account, on RQ's Redis unless given a connection.

    The margin is at least CLOUDAGENT_RATE_MIN_SLACK_SECONDS over the window: the jitter between our grant and the
    provider's clock does not shrink with the window, and a shrunk test window would otherwise leave it none."""
    if redis_conn is None:
        # Deferred optional dependency, django_rq: it reads Django settings when imported, and the pacer is used
        # without them (bench/bench_pacer.py).
        import django_rq

        redis_conn = django_rq.get_connection()
    window = settings.CLOUDAGENT_WINDOW_SECONDS
    return SlotPacer(
        redis_conn,
        f"leadhub:pacer:account:{account_id}",
        requests_per_window=settings.CLOUDAGENT_REQUESTS_PER_WINDOW,
        window_seconds=window,
        margin=max(settings.CLOUDAGENT_RATE_MARGIN, settings.CLOUDAGENT_RATE_MIN_SLACK_SECONDS / window),
    )
