"""Callback: how fast the webhook acknowledges CloudAgent's answer for a 500-lead transaction, over real HTTP to
gunicorn (2 sync workers, DEBUG off) on PostgreSQL, with 1,000,000 leads in the table.

Variants: a Success applied in full; a partial Success naming a failed file (acknowledged at once, the download
queued); the same Success again (a duplicate, ignored); four clients at once, each callback on a connection of its
own as CloudAgent calls, a quarter of them delivered twice. Then the failed-file jobs run on a real RQ worker, and
every lead is checked against what it should have become."""

import csv
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlencode

import requests

DATABASE = "leadhub_bench_cb"
LEADS_PER_TRANSACTION = 500
CALLBACKS = 50  # per sequential variant
CONCURRENT_CALLBACKS = 100
CLIENTS = 4
DUPLICATE_SHARE = 0.25
TABLE_LEADS = 1_000_000
FAILED_PER_FILE = 25
WARM_UP = 3


def run(report) -> None:
    from common import ROOT, drop_database, free_port, ms, p95, post_new_connection, start_gunicorn, use_database

    database_url = use_database(DATABASE, redis_db=13)
    media = tempfile.mkdtemp(prefix="leadhub-bench-cb-")
    os.environ["MEDIA_ROOT"] = media  # the failed-file copies the worker stores
    server = files = None
    try:
        from django.db import connection
        from django.urls import reverse

        from campaigns.models import Campaign, CloudAgentAccount, Lead
        from uploads.models import UploadTransaction

        account = CloudAgentAccount.objects.create(name="bench", user_name="u", api_key="k")
        campaign = Campaign.objects.create(account=account, name="Bench_Outbound")
        groups = {"warm": WARM_UP, "success": CALLBACKS, "partial": CALLBACKS, "concurrent": CONCURRENT_CALLBACKS}
        transactions = _transactions(campaign, groups)
        started = time.perf_counter()
        _copy_leads(
            connection, campaign, transactions, filler=TABLE_LEADS - LEADS_PER_TRANSACTION * sum(groups.values())
        )
        build_seconds = time.perf_counter() - started
        total_leads = Lead.objects.count()

        files = _FailedFiles()
        for tx in transactions["partial"]:
            files.add(tx.transaction_id, _failed_rows(tx))
        port = free_port()
        server = start_gunicorn(port, database_url)
        url = f"http://127.0.0.1:{port}" + reverse("cloudagent-callback", kwargs={"secret": account.callback_secret})

        http = requests.Session()
        for tx in transactions["warm"]:
            _post(http, url, _callback(tx))
        success = [_post(http, url, _callback(tx)) for tx in transactions["success"]]
        partial = [
            _post(http, url, _callback(tx, failed_url=files.url_for(tx.transaction_id)))
            for tx in transactions["partial"]
        ]
        duplicate = [_post(http, url, _callback(tx)) for tx in transactions["success"]]
        deliveries = _with_duplicates(transactions["concurrent"])
        with ThreadPoolExecutor(CLIENTS) as pool:
            wall = time.perf_counter()
            answers = list(pool.map(lambda tx: post_new_connection(url, *_form(tx)), deliveries))
            wall = time.perf_counter() - wall
        concurrent = [seconds for seconds, _ in answers]
        refused = sum(1 for _, status in answers if status != 200)

        jobs_started = time.perf_counter()
        subprocess.run(
            [sys.executable, "manage.py", "rqworker", "callbacks", "--burst"],
            cwd=ROOT,
            env={**os.environ, "LOG_LEVEL": "WARNING"},
            check=True,
            capture_output=True,
        )
        jobs_seconds = time.perf_counter() - jobs_started
        wrong = _wrong_leads(Lead, UploadTransaction, transactions)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        if files is not None:
            files.close()
        shutil.rmtree(media, ignore_errors=True)
        drop_database(DATABASE)

    report("callback", "leads in the table", total_leads)
    report("callback", "building the table with COPY (s)", round(build_seconds, 2))
    for name, latencies in [
        ("Success, 500 leads uploaded", success),
        ("partial + failed file (ack; download queued)", partial),
        ("duplicate Success (ignored)", duplicate),
    ]:
        report("callback", f"{name}: p50 ms", ms(statistics.median(latencies)))
        report("callback", f"{name}: p95 ms", ms(p95(latencies)))
    shown = f"{CLIENTS} clients, a connection each, {DUPLICATE_SHARE:.0%} duplicates"
    report("callback", f"{shown}: callbacks/s", round(len(concurrent) / wall, 1))
    report("callback", f"{shown}: p50 ms", ms(statistics.median(concurrent)))
    report("callback", f"{shown}: p95 ms (target <= 100)", ms(p95(concurrent)))
    report("callback", f"{shown}: answers other than 200 (must be 0)", refused)
    report("callback", "failed-file job, 500 leads: mean ms (incl. worker start)", ms(jobs_seconds / CALLBACKS))
    report("callback", "leads not in the state they should be (must be 0)", wrong)


def _transactions(campaign, groups: dict[str, int]) -> dict[str, list]:
    from django.utils import timezone

    from uploads.models import UploadTransaction

    made, serial = {}, 0
    for group, count in groups.items():
        batch = []
        for _ in range(count):
            serial += 1
            batch.append(
                UploadTransaction(
                    campaign=campaign,
                    state=UploadTransaction.State.QUEUED,
                    transaction_id=f"1720678529129171{serial:08d}",
                    row_count=LEADS_PER_TRANSACTION,
                    sent_at=timezone.now(),
                )
            )
        made[group] = UploadTransaction.objects.bulk_create(batch)
    return made


def _copy_leads(connection, campaign, transactions: dict[str, list], *, filler: int) -> None:
    """The filler leads with one INSERT ... SELECT; the transactions' leads with COPY (~60k rows/s into the
    indexed table, docs/performance.md), against ~10-20k for bulk_create."""
    now = datetime.now().astimezone()
    columns = (
        "campaign_id, phone_number, name, agent_id, skill, extra, status, status_reason, source, created_at, "
        "updated_at, upload_transaction_id"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"""INSERT INTO campaigns_lead ({columns})
                SELECT %s, '+9170' || lpad(n::text, 8, '0'), 'Old ' || n, '', '', '{{}}', 'uploaded', '', 'manual',
                    now(), now(), NULL
                FROM generate_series(0, %s - 1) AS n""",
            [campaign.pk, filler],
        )
    with connection.cursor() as cursor, cursor.copy(f"COPY campaigns_lead ({columns}) FROM STDIN") as copy:
        for tx in (tx for group in transactions.values() for tx in group):
            for phone in _phones(tx):
                copy.write_row((campaign.pk, phone, "Lead", "", "", "{}", "sent", "", "manual", now, now, tx.pk))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE campaigns_lead")


def _phones(tx) -> list[str]:
    return [f"+9198{tx.pk:04d}{i:04d}" for i in range(LEADS_PER_TRANSACTION)]


def _failed_rows(tx) -> list[tuple[str, str]]:
    """As the push sent them: national digits; every twentieth lead, with a reason."""
    return [(phone[3:], "PhoneNumber Added is a DND Number") for phone in _phones(tx)[::20][:FAILED_PER_FILE]]


def _callback(tx, *, failed_url: str = "") -> dict:
    failed = FAILED_PER_FILE if failed_url else 0
    data = {
        "totalNoUploaded": str(LEADS_PER_TRANSACTION),
        "numbersProcessed": str(LEADS_PER_TRANSACTION - failed),
        "numbersNotProcessed": str(failed),
        "failedFilePath": failed_url,
        "transactionId": tx.transaction_id,
        "status": "Success",
        "message": "File Successfully uploaded.",
        "startDateTime": "2024-07-11 11:45:29",
        "endDateTime": "2024-07-11 11:45:54",
    }
    return {"data": json.dumps(data)}


def _with_duplicates(transactions: list) -> list:
    """Every transaction once, and a DUPLICATE_SHARE of the deliveries a second time, a little later, as a
    provider retry would come."""
    rng = random.Random(5)
    deliveries = list(transactions)
    repeats = round(len(transactions) * DUPLICATE_SHARE / (1 - DUPLICATE_SHARE))
    for tx in rng.sample(transactions, repeats):
        deliveries.insert(min(len(deliveries), deliveries.index(tx) + rng.randrange(1, 8)), tx)
    return deliveries


def _form(tx) -> tuple[bytes, str]:
    return urlencode(_callback(tx)).encode(), "application/x-www-form-urlencoded"


def _post(http: requests.Session, url: str, form: dict) -> float:
    started = time.perf_counter()
    response = http.post(url, data=form, timeout=30)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"callback answered {response.status_code}: {response.text[:300]}")
    return elapsed


def _wrong_leads(Lead, UploadTransaction, transactions) -> int:
    expected_uploaded = {tx.pk for group in ("warm", "success", "concurrent") for tx in transactions[group]}
    wrong = (
        Lead.objects.filter(upload_transaction_id__in=expected_uploaded).exclude(status="uploaded").count()
        + UploadTransaction.objects.filter(pk__in=expected_uploaded).exclude(state="completed").count()
    )
    for tx in transactions["partial"]:
        failed = {"+91" + phone for phone, _ in _failed_rows(tx)}
        statuses = dict(Lead.objects.filter(upload_transaction=tx).values_list("phone_number", "status"))
        wrong += sum(1 for phone, status in statuses.items() if status != ("failed" if phone in failed else "uploaded"))
    return wrong


class _FailedFiles:
    """CloudAgent's pre-signed failed-file links, served from a loopback thread."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        files = self.files

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                content = files.get(self.path.split("?")[0].strip("/").removesuffix(".csv"))
                self.send_response(200 if content is not None else 404)
                self.send_header("Content-Type", "text/csv")
                self.send_header("Content-Length", str(len(content or b"")))
                self.end_headers()
                self.wfile.write(content or b"")

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def add(self, name: str, rows: list[tuple[str, str]]) -> None:
        out = io.StringIO()
        csv.writer(out).writerows([("PhoneNumber", "Name", "Reason"), *((phone, "Lead", why) for phone, why in rows)])
        self.files[name] = out.getvalue().encode()

    def url_for(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}.csv?X-Amz-Expires=86400&X-Amz-Signature=x"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    run(lambda section, name, value: print(f"{section:<8} {name:<70} {value}"))
