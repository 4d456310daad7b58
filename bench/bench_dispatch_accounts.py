"""Dispatch (a): 12 accounts x 5,000 leads pushed at the same moment, the default worker set (`make worker`),
PostgreSQL, an emulator holding every account to 5 requests per 6 s window.

Figures: each account's pace as a share of its ceiling (min / median, from the emulator's arrival times), the
makespan (push to last request) against the ideal (9 intervals: 10 batches per account, the first at once),
rate-limit answers (must be 0) and duplicates received (must be 0)."""

import math
import os
import sys

PER_WINDOW = 5


def run(report) -> None:
    measure(report, section="dispatch-a", accounts=12, leads=5000, window=6.0)


def measure(report, *, section: str, accounts: int, leads: int, window: float) -> None:
    from common import drop_database, start_emulator, use_database
    from dispatch_common import (
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

    from tests.private_redis import PrivateRedis

    redis_server = PrivateRedis()
    os.environ.update(
        {
            "CLOUDAGENT_WINDOW_SECONDS": str(window),
            "CLOUDAGENT_REQUESTS_PER_WINDOW": str(PER_WINDOW),
            "LEADHUB_PUBLIC_URL": "http://127.0.0.1:9",  # callbacks are not what this bench measures
        }
    )
    database = f"leadhub_bench_{section.replace('-', '_')}"
    use_database(database, redis_url=redis_server.url)
    emulator, url = start_emulator(
        "--config",
        str(emulator_config(accounts)),
        "--window-seconds",
        str(window),
        "--requests-per-window",
        str(PER_WINDOW),
        "--process-delay",
        "1",
        "--callback-retries",
        "0",
    )
    workers = None
    try:
        campaigns = make_accounts(accounts, leads, url)
        workers = Workers({**os.environ}, "bench-dispatch-workers.log")
        workers.wait_ready()  # the work arrives at a running installation
        pushed_at = push_at_once(campaigns)
        batches = math.ceil(leads / 500)
        ideal = (batches - 1) * window / PER_WINDOW
        finished = wait_until_sent(timeout=ideal * 10 + 120)
        sent = emulator_requests(url)
        phones = emulator_phones(url)
    finally:
        if workers is not None:
            workers.stop()
        emulator.terminate()
        emulator.wait(timeout=10)
        redis_server.kill()
    report(section, f"accounts x leads ({PER_WINDOW} requests per {window:g} s window)", f"{accounts} x {leads}")
    report(section, "every batch sent", finished)
    report_paces(report, section, paces(sent, per_window=PER_WINDOW, window=window, pushed_at=pushed_at))
    report(section, "makespan, push to last request (s)", round(max(r["time"] for r in sent) - pushed_at, 1))
    report(section, "ideal makespan (s)", round(ideal, 1))
    report(section, "requests", len(sent))
    report(section, "rate-limit answers (must be 0)", rate_limit_answers(sent))
    report(section, "leads received / duplicates", f"{len(phones)} / {len(phones) - len(set(phones))}")
    report(section, "worker processes", workers.processes)
    report(section, "peak RSS of all workers (MB)", round(workers.peak_total_rss / 2**20))
    senders = [rss for name, rss in workers.peak_rss.items() if "run_dispatcher" in name or "push" in name]
    report(section, "peak RSS of the sending process(es) (MB)", round(max(senders, default=0) / 2**20))
    busy = sum(cpu for name, cpu in workers.cpu_seconds.items() if "run_dispatcher" in name or "push" in name)
    report(section, "CPU of the sending process(es) per request (ms)", round(busy / len(sent) * 1000, 1))
    drop_database(database)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    run(lambda section, name, value: print(f"{section:<12} {name:<60} {value}"))
