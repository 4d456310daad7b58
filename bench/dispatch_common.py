"""What the dispatch benchmarks share: a private redis-server, an emulator knowing N accounts, N accounts with
their leads, the default worker set (`manage.py run_workers`) with its memory sampled, and the figures read
from the emulator's own arrival times.

Only APIs that unmodified main has too are used here (leads_push, run_workers, the models' states), so the
same bench measures the before and the after (LEADHUB_BENCH_ROOT points it at another checkout)."""

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import requests
from common import ROOT, free_port


def emulator_config(accounts: int) -> Path:
    config = {
        "accounts": [
            {
                "userName": f"bench_user_{n}",
                "apiKey": f"bench-api-key-{n:04d}-0123456789",
                "campaigns": [{"name": f"Bench_{n}", "type": "outbound", "map": ["PhoneNumber", "Name"]}],
            }
            for n in range(accounts)
        ]
    }
    path = Path(tempfile.mkstemp(prefix="bench-emulator-", suffix=".json")[1])
    path.write_text(json.dumps(config))
    return path


def make_accounts(accounts: int, leads: int, url: str) -> list:
    from campaigns.models import Campaign, CloudAgentAccount, Lead

    campaigns = []
    for n in range(accounts):
        account = CloudAgentAccount.objects.create(
            name=f"bench {n}", user_name=f"bench_user_{n}", api_key=f"bench-api-key-{n:04d}-0123456789", base_url=url
        )
        campaign = Campaign.objects.create(account=account, name=f"Bench_{n}", column_map=["PhoneNumber", "Name"])
        Lead.objects.bulk_create(
            (Lead(campaign=campaign, phone_number=f"+919{n:03d}{i:06d}", name=f"Lead {i}") for i in range(leads)),
            batch_size=5000,
        )
        campaigns.append(campaign)
    return campaigns


def push_at_once(campaigns) -> float:
    """Every campaign pushed in one transaction, so every account's batches appear at the same moment;
    returns that moment (wall clock, as the emulator records arrivals)."""
    from django.db import transaction

    from campaigns.models import Lead
    from uploads.services import leads_push

    with transaction.atomic():
        for campaign in campaigns:
            leads_push(leads=Lead.objects.filter(campaign=campaign))
    return time.time()


def wait_until_sent(timeout: float) -> bool:
    from uploads.models import UploadTransaction

    deadline = time.monotonic() + timeout
    unsent = UploadTransaction.objects.filter(state__in=["pending", "sending"])
    while unsent.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.25)
    return True


class Workers:
    """`manage.py run_workers` as a user starts it (its default worker set), every process of its tree sampled
    for memory."""

    def __init__(self, env: dict, log_name: str) -> None:
        # As deployed: DEBUG off (with it on, Django keeps every query's SQL, a cost production does not pay).
        env = {**env, "DJANGO_DEBUG": "0", "SECRET_KEY": "bench-only-secret-key", "LEADHUB_ALLOW_PLAIN_HTTP": "1"}
        (ROOT / "var").mkdir(exist_ok=True)  # a fresh clone has none yet
        self.log = open(ROOT / "var" / log_name, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "run_workers"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.peak_total_rss = 0
        self.peak_rss = {}
        self.cpu_seconds = {}
        self.processes = 0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until every RQ worker has registered and, where there is a dispatch service, it has a heartbeat: a
        loaded machine takes seconds to start Django, and a push must not be timed from before that."""
        import redis
        from rq import Worker

        from uploads import models

        connection = redis.Redis.from_url(os.environ["REDIS_URL"])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rq_ready = Worker.count(connection=connection) >= 3
            node = getattr(models, "DispatchNode", None)  # the dispatch service's heartbeat, where there is one
            if rq_ready and (node is None or node.objects.exists()):
                return
            time.sleep(0.2)
        raise RuntimeError("the workers did not start")

    def children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            total = 0
            tree = [psutil.Process(self.process.pid), *self.children()]
            self.processes = max(self.processes, len(tree))
            for process in tree:
                try:
                    rss = process.memory_info().rss
                    name = " ".join(process.cmdline()[2:4]) or "run_workers"
                    cpu = process.cpu_times()
                    self.cpu_seconds[name] = max(self.cpu_seconds.get(name, 0.0), cpu.user + cpu.system)
                except psutil.Error:
                    continue
                total += rss
                self.peak_rss[name] = max(self.peak_rss.get(name, 0), rss)
            self.peak_total_rss = max(self.peak_total_rss, total)

    def child_running(self, *words: str) -> psutil.Process | None:
        for process in self.children():
            try:
                if all(word in process.cmdline() for word in words):
                    return process
            except psutil.Error:
                continue
        return None

    def stop(self) -> None:
        self._stop.set()
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.log.close()


def emulator_requests(url: str) -> list[dict]:
    return requests.get(f"{url}/_emulator/inspect", params={"sections": "requests"}, timeout=120).json()["requests"]


def emulator_phones(url: str) -> list[str]:
    requests.post(f"{url}/_emulator/process-now", json={}, timeout=300)
    leads = requests.get(f"{url}/_emulator/inspect", params={"sections": "leads"}, timeout=120).json()["leads"]
    return [lead["PhoneNumber"] for campaign in leads.values() for lead in campaign]


def rate_limit_answers(sent: list[dict]) -> int:
    return sum(1 for r in sent if "too many" in str(r.get("answer", "")).lower())


def paces(sent: list[dict], *, per_window: int, window: float, pushed_at: float) -> dict[str, float]:
    """Each account's pace as a share of its ceiling, as the operator sees it: the requests after the first
    over the time from the push to the account's last request (the first may go at once), by the emulator's
    arrival times. An account made to wait for a worker scores low even if it then sent at full speed."""
    by_account: dict[str, list[float]] = {}
    for r in sent:
        by_account.setdefault(r.get("userName") or "?", []).append(r["time"])
    ceiling = per_window / window
    return {
        user: (len(times) - 1) / (max(times) - pushed_at) / ceiling
        for user, times in by_account.items()
        if len(times) > 1
    }


def report_paces(report, section: str, found: dict[str, float]) -> None:
    values = sorted(found.values())
    report(section, "accounts that sent", len(values))
    report(section, "pace / ceiling, min", round(values[0], 3) if values else 0.0)
    report(section, "pace / ceiling, median", round(statistics.median(values), 3) if values else 0.0)


def start_web(env: dict) -> tuple[subprocess.Popen, str]:
    """gunicorn serving the callback webhook, as in production (2 sync workers)."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "leadhub.wsgi",
            "-w",
            "2",
            "-b",
            f"127.0.0.1:{port}",
            "--log-level",
            "error",
        ],
        cwd=ROOT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(f"{url}/healthz", timeout=10)
            return process, url
        except requests.RequestException:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("gunicorn did not answer within 60 s")
