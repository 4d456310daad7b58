"""Push: 20,000 leads through 2 RQ workers against the emulator, the window shrunk to 6 s (5 requests per 6 s).

Figures: requests made, rate-limit answers (must be 0), the largest batch, the achieved pace as a ratio of the
limit's ceiling (from the emulator's own arrival times), and leads received vs pushed (must be equal)."""

import os
import subprocess
import sys
import time

import requests

LEADS = 20_000
WINDOW = 6.0
PER_WINDOW = 5


def run(report) -> None:
    os.environ.update({"CLOUDAGENT_WINDOW_SECONDS": str(WINDOW), "CLOUDAGENT_REQUESTS_PER_WINDOW": str(PER_WINDOW)})
    from common import ROOT, drop_database, start_emulator, use_database

    use_database("leadhub_bench_push")
    emulator, url = start_emulator(
        "--window-seconds", str(WINDOW), "--requests-per-window", str(PER_WINDOW), "--process-delay", "0.2"
    )
    workers = []
    log = open(ROOT / "var" / "bench-push-workers.log", "w")  # noqa: SIM115 - closed after the workers stop
    try:
        import django_rq

        from campaigns.models import Campaign, CloudAgentAccount, Lead
        from uploads.jobs import account_dispatch_job
        from uploads.models import UploadTransaction
        from uploads.services import leads_push

        account = CloudAgentAccount.objects.create(
            name="bench", user_name="demo_user", api_key="demo-api-key-0123456789", base_url=url
        )
        campaign = Campaign.objects.create(
            account=account, name="Demo_Outbound", column_map=["PhoneNumber", "Name", "Priority", "ExpiryDate"]
        )
        Lead.objects.bulk_create(
            (Lead(campaign=campaign, phone_number=f"+9197{n:08d}", name=f"Lead {n}") for n in range(LEADS)),
            batch_size=5000,
        )
        workers = [
            subprocess.Popen(
                [sys.executable, "manage.py", "rqworker", "push", "default"],
                cwd=ROOT,
                env=os.environ,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            for _ in range(2)
        ]
        time.sleep(1.5)  # let both workers register before the work arrives
        summary = leads_push(leads=Lead.objects.filter(campaign=campaign))
        # A second dispatcher job races the first: the lease must keep them from doubling the pace.
        django_rq.get_queue("push").enqueue(account_dispatch_job, account.pk)
        deadline = time.monotonic() + summary.eta_seconds + 120
        unfinished = UploadTransaction.objects.filter(state__in=["pending", "sending"])
        while unfinished.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        requests.post(f"{url}/_emulator/process-now", timeout=30)
        snapshot = requests.get(f"{url}/_emulator/inspect", timeout=30).json()
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)
        log.close()
        emulator.terminate()
        emulator.wait(timeout=10)

    sent = snapshot["requests"]
    accepted = [r for r in sent if r.get("transactionId")]
    times = sorted(r["time"] for r in sent)
    limited = sum(1 for r in sent if "too many" in str(r.get("answer", "")).lower())
    phones = [lead["PhoneNumber"] for lead in snapshot["leads"].get("Demo_Outbound", [])]
    pace = (len(times) - 1) / (times[-1] - times[0])
    report("push", "leads pushed", summary.leads)
    report("push", "batches", summary.batches)
    report("push", "ETA announced at push time (s)", round(summary.eta_seconds, 1))
    report("push", "requests made", len(sent))
    report("push", "requests accepted", len(accepted))
    report("push", "rate-limit answers (must be 0)", limited)
    report("push", "largest batch (rows)", max(r["rows"] for r in sent))
    report("push", "first to last request (s)", round(times[-1] - times[0], 2))
    report(
        "push",
        f"pace / ceiling ({PER_WINDOW} per {WINDOW:g} s; target >= 0.93)",
        round(pace / (PER_WINDOW / WINDOW), 3),
    )
    arrivals = sorted(r["monotonic"] for r in sent)
    tightest = min(b - a for a, b in zip(arrivals, arrivals[PER_WINDOW:], strict=False))
    report(
        "push", f"tightest span of {PER_WINDOW + 1} consecutive arrivals (s; must be > {WINDOW:g})", round(tightest, 3)
    )
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    report("push", "arrival gaps min / max (s)", f"{min(gaps):.3f} / {max(gaps):.3f}")
    if limited:
        report(
            "push", "rate-limited request numbers", str([r["id"] for r in sent if r.get("outcome") == "rate_limited"])
        )
    report("push", "leads received by the emulator", len(phones))
    report("push", "duplicates received (must be 0)", len(phones) - len(set(phones)))
    drop_database("leadhub_bench_push")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    run(lambda section, name, value: print(f"{section:<8} {name:<60} {value}"))
