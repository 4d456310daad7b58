"""Dispatch (c), a fault run: 4 accounts x 2,500 leads pushed at once through the default worker set, callbacks
answered by gunicorn, a 6 s window. Mid-push the dispatcher is SIGKILLed (run_workers starts it again), the
private Redis is killed and started again empty, and every PostgreSQL connection is terminated. A third of the
emulator's answers come a second late, so the faults find sends in flight.

Must hold: every lead ends `uploaded`, the emulator received each number exactly once, at most one rate-limit
answer. Reported too: the batches re-sent as ambiguous and how long everything took to settle."""

import os
import signal
import sys
import time

ACCOUNTS, LEADS, WINDOW = 4, 2500, 6.0


def run(report) -> None:
    from common import drop_database, start_emulator, use_database
    from dispatch_common import (
        Workers,
        emulator_config,
        emulator_phones,
        emulator_requests,
        make_accounts,
        push_at_once,
        rate_limit_answers,
        start_web,
    )

    from tests.private_redis import PrivateRedis

    section = "dispatch-c"
    redis_server = PrivateRedis()
    database = "leadhub_bench_dispatch_c"
    use_database(database, redis_url=redis_server.url)
    env = {
        **os.environ,
        "CLOUDAGENT_WINDOW_SECONDS": str(WINDOW),
        "CLOUDAGENT_REQUESTS_PER_WINDOW": "5",
        "CLOUDAGENT_READ_TIMEOUT": "10",
        "LEADHUB_DISPATCH_LEASE_SECONDS": "3",
        "LEADHUB_WATCHDOG_SECONDS": "5",
    }
    web, web_url = start_web(env)
    env["LEADHUB_PUBLIC_URL"] = web_url
    os.environ.update(env)
    emulator, emulator_url = start_emulator(
        "--config",
        str(emulator_config(ACCOUNTS)),
        "--window-seconds",
        str(WINDOW),
        "--requests-per-window",
        "5",
        "--process-delay",
        "0.5",
        # A third of the answers come a second late: the kill and the dropped connections find sends in flight.
        "--slow-rate",
        "0.3",
        "--slow-seconds",
        "1",
        "--callback-retries",
        "60",
        "--callback-retry-delay",
        "1",
    )
    workers = None
    events = []
    try:
        from django.db import connection

        from campaigns.models import Lead
        from uploads.models import UploadTransaction

        campaigns = make_accounts(ACCOUNTS, LEADS, emulator_url)
        workers = Workers(env, "bench-dispatch-faults-workers.log")
        workers.wait_ready()
        pushed_at = push_at_once(campaigns)
        in_flight = UploadTransaction.objects.filter(state="sending", last_attempt_at__isnull=False)
        deadline = time.monotonic() + 30
        while not in_flight.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        dispatcher = workers.child_running("run_dispatcher")
        os.kill(dispatcher.pid, signal.SIGKILL)
        events.append(f"dispatcher SIGKILLed with {in_flight.count()} send(s) in flight")
        time.sleep(2)
        redis_server.kill()
        time.sleep(2)
        redis_server.start()
        events.append("Redis killed, started again empty 2 s later")
        time.sleep(2)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            events.append(f"{cursor.fetchone()[0]} PostgreSQL connections terminated")
        deadline = time.monotonic() + 300
        open_leads = Lead.objects.filter(status__in=["new", "queued", "sent"])
        while open_leads.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        settled = time.time() - pushed_at
        sent = emulator_requests(emulator_url)
        phones = emulator_phones(emulator_url)
        statuses = {s: Lead.objects.filter(status=s).count() for s in Lead.Status.values}
        ambiguous = UploadTransaction.objects.filter(ambiguous_attempts__gt=0).count()
    finally:
        if workers is not None:
            workers.stop()
        web.terminate()
        web.wait(timeout=30)
        emulator.terminate()
        emulator.wait(timeout=10)
        redis_server.kill()
    total = ACCOUNTS * LEADS
    report(section, "faults", "; ".join(events))
    report(section, f"leads uploaded (must be {total})", statuses["uploaded"])
    report(section, "leads in other statuses", {s: n for s, n in statuses.items() if n and s != "uploaded"} or "none")
    report(
        section, f"numbers received by the emulator / distinct (must be {total})", f"{len(phones)} / {len(set(phones))}"
    )
    report(section, "rate-limit answers (must be <= 1)", rate_limit_answers(sent))
    report(section, "requests / batches re-sent as ambiguous", f"{len(sent)} / {ambiguous}")
    report(section, "push to every lead settled (s)", round(settled, 1))
    drop_database(database)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    run(lambda section, name, value: print(f"{section:<12} {name:<60} {value}"))
