"""Pacer benchmark: 4 processes take slots on one key as fast as the pacer lets them (N=5, W=3 s, for ~15 s).

Reports the pace achieved as a share of the ceiling N/W (the margin alone caps it at 1/1.02 = 0.980) and the most
grants seen in any window of W seconds (must be <= N). Times are the pacer's own, Redis TIME, read from its DEBUG
log. Uses REDIS_URL (default: the app's default Redis) on a key of its own that it deletes afterwards.

    .venv/bin/python bench/bench_pacer.py
"""

import bisect
import logging
import multiprocessing
import os
import sys
import time
import uuid
from pathlib import Path

import redis

# Run as a script, only bench/ is on the path; the editable install does not map the app packages.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from uploads.ratelimit import SlotPacer, SlotTimeout  # noqa: E402

REQUESTS_PER_WINDOW, WINDOW_SECONDS = 5, 3.0
PROCESSES, RUN_SECONDS = 4, 15.0


class _GrantTimes(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.times: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        _, redis_time, wait = record.args
        if not wait:
            self.times.append(redis_time)


def _pacer(url: str, key: str) -> SlotPacer:
    return SlotPacer(
        redis.Redis.from_url(url), key, requests_per_window=REQUESTS_PER_WINDOW, window_seconds=WINDOW_SECONDS
    )


def _take_slots(url: str, key: str, deadline: float, out) -> None:
    grants = _GrantTimes()
    logger = logging.getLogger("leadhub.ratelimit")
    logger.addHandler(grants)
    logger.setLevel(logging.DEBUG)
    slots = _pacer(url, key)
    while True:
        try:
            slots.acquire(timeout=deadline - time.monotonic())
        except SlotTimeout:
            break
    out.put(grants.times)


def run(report) -> None:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    key = f"leadhub:bench:pacer:{uuid.uuid4().hex}"
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    deadline = time.monotonic() + RUN_SECONDS
    workers = [context.Process(target=_take_slots, args=(url, key, deadline, out)) for _ in range(PROCESSES)]
    for worker in workers:
        worker.start()
    grants = sorted(t for _ in workers for t in out.get(timeout=RUN_SECONDS + 60))
    for worker in workers:
        worker.join()
    _pacer(url, key).reset()

    pace = (len(grants) - 1) / (grants[-1] - grants[0])
    rule = f"{REQUESTS_PER_WINDOW} per {WINDOW_SECONDS:g} s"
    report("pacer", f"4 processes, {rule}: pace / ceiling", round(pace / (REQUESTS_PER_WINDOW / WINDOW_SECONDS), 4))
    report(
        "pacer",
        f"most grants in any {WINDOW_SECONDS:g} s window (limit {REQUESTS_PER_WINDOW})",
        max(bisect.bisect_right(grants, start + WINDOW_SECONDS) - i for i, start in enumerate(grants)),
    )


if __name__ == "__main__":
    run(lambda section, name, value: print(f"{section:<8} {name:<60} {value}"))
