"""Dispatch (a): 12 accounts x 5,000 leads pushed at the same moment, the default worker set (`make worker`),
PostgreSQL, an emulator holding every account to 5 requests per 6 s window.

Figures: each account's pace as a share of its ceiling (min / median, from the emulator's arrival times), the
makespan (push to last request) against the ideal (9 intervals: 10 batches per account, the first at once),
rate-limit answers (must be 0) and duplicates received (must be 0)."""

import math
import os
import sys
import time

ACCOUNTS = int(os.environ.get("BENCH_DISPATCH_ACCOUNTS", 12))
LEADS = int(os.environ.get("BENCH_DISPATCH_LEADS", 5000))
WINDOW = float(os.environ.get("BENCH_DISPATCH_WINDOW", 6.0))
PER_WINDOW = 5
SECTION = os.environ.get("BENCH_DISPATCH_SECTION", "dispatch-a")


def run(report) -> None:
    from common import drop_database, start_emulator, use_database
    from dispatch_common import (
        RedisServer,
        Workers,
        emulator_config,
        emulator_phones,
        emulator_requests,
        make_accounts,
        paces,
        push_at_once,
        rate_limit_answers,
        report_paces,
        wait_until_sent,
    )

    redis_server = RedisServer()
    os.environ.update(
        {
            "CLOUDAGENT_WINDOW_SECONDS": str(WINDOW),
            "CLOUDAGENT_REQUESTS_PER_WINDOW": str(PER_WINDOW),
            "LEADHUB_PUBLIC_URL": "http://127.0.0.1:9",  # callbacks are not what this bench measures
        }
    )
    database = "leadhub_bench_dispatch_a"
    use_database(database, redis_url=redis_server.url)
    emulator, url = start_emulator(
        "--config",
        str(emulator_config(ACCOUNTS)),
        "--window-seconds",
        str(WINDOW),
        "--requests-per-window",
        str(PER_WINDOW),
        "--process-delay",
        "1",
        "--callback-retries",
        "0",
    )
    workers = None
    try:
        campaigns = make_accounts(ACCOUNTS, LEADS, url)
        workers = Workers({**os.environ}, "bench-dispatch-workers.log")
        time.sleep(4)  # let every worker start before the work arrives, as a running installation has
        pushed_at = push_at_once(campaigns)
        batches = math.ceil(LEADS / 500)
        ideal = (batches - 1) * WINDOW / PER_WINDOW
        finished = wait_until_sent(timeout=ideal * 10 + 120)
        sent = emulator_requests(url)
        phones = emulator_phones(url)
    finally:
        if workers is not None:
            workers.stop()
        emulator.terminate()
        emulator.wait(timeout=10)
        redis_server.kill()
    report(SECTION, f"accounts x leads ({PER_WINDOW} requests per {WINDOW:g} s window)", f"{ACCOUNTS} x {LEADS}")
    report(SECTION, "every batch sent", finished)
    report_paces(report, SECTION, paces(sent, per_window=PER_WINDOW, window=WINDOW))
    report(SECTION, "makespan, push to last request (s)", round(max(r["time"] for r in sent) - pushed_at, 1))
    report(SECTION, "ideal makespan (s)", round(ideal, 1))
    report(SECTION, "requests", len(sent))
    report(SECTION, "rate-limit answers (must be 0)", rate_limit_answers(sent))
    report(SECTION, "leads received / duplicates", f"{len(phones)} / {len(phones) - len(set(phones))}")
    report(SECTION, "worker processes", workers.processes)
    report(SECTION, "peak RSS of all workers (MB)", round(workers.peak_total_rss / 2**20))
    drop_database(database)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    run(lambda section, name, value: print(f"{section:<12} {name:<60} {value}"))
