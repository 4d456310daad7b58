"""Call summaries: how fast the "URL to Push" webhook takes CloudAgent's posts, over real HTTP to gunicorn
(2 sync workers, DEBUG off) on PostgreSQL with 1,000,000 leads, 4 concurrent clients, each post on a connection
of its own (as CloudAgent calls). The mix: a post at once without disposition for every call, the delayed post
with it for most, 10% of posts delivered twice, 5% of calls matching no lead (matched by UUI, in vain).
Then every lead is checked against the calls it had."""

import json
import os
import random
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

DATABASE = "leadhub_bench_calls"
LEADS = 1_000_000
CALLS = 800
CLIENTS = 4
WARM_UP = 20


def run(report) -> None:
    from common import drop_database, free_port, ms, p95, post_new_connection, start_gunicorn, use_database

    database_url = use_database(DATABASE, redis_db=12)
    server = None
    try:
        from django.db import connection
        from django.urls import reverse

        from calls.models import Call
        from campaigns.models import Campaign, CloudAgentAccount, Lead

        account = CloudAgentAccount.objects.create(name="bench", user_name="u", api_key="bench-api-key-0123456789")
        campaign = Campaign.objects.create(account=account, name="Bench_Outbound")
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(
                """INSERT INTO campaigns_lead (campaign_id, phone_number, name, agent_id, skill, status, status_reason,
                       extra, source, created_at, updated_at)
                   SELECT %s, '+9170' || lpad(n::text, 8, '0'), 'Lead ' || n, '', '', 'uploaded', '', '{}', 'import',
                       now(), now()
                   FROM generate_series(0, %s - 1) AS n""",
                [campaign.pk, LEADS],
            )
            cursor.execute("ANALYZE campaigns_lead")
        build_seconds = time.perf_counter() - started

        port = free_port()
        server = start_gunicorn(port, database_url)
        url = f"http://127.0.0.1:{port}" + reverse(
            "cloudagent-call-summary", kwargs={"secret": account.call_summary_secret}
        )
        posts, expected = _posts(account.api_key)
        for body in posts[:WARM_UP]:
            post_new_connection(url, body, "application/x-www-form-urlencoded")
        timed = posts[WARM_UP:]
        with ThreadPoolExecutor(CLIENTS) as pool:
            wall = time.perf_counter()
            results = list(
                pool.map(lambda body: post_new_connection(url, body, "application/x-www-form-urlencoded"), timed)
            )
            wall = time.perf_counter() - wall
        latencies = [seconds for seconds, _ in results]
        bad = sum(1 for _, status in results if status != 200)
        leads = dict(Lead.objects.filter(call_attempts__gt=0).values_list("name", "call_attempts"))
        wrong = sum(1 for name, attempts in expected.items() if leads.get(name, 0) != attempts) + sum(
            1 for name in leads if name not in expected
        )
        calls = Call.objects.count()
        unmatched = Call.objects.filter(lead__isnull=True).count()
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        drop_database(DATABASE)

    report("calls", "leads in the table", LEADS)
    report("calls", "building the table (s)", round(build_seconds, 1))
    report("calls", f"posts timed ({CLIENTS} clients, a connection per post)", len(timed))
    report("calls", "call summary post: p50 ms", ms(statistics.median(latencies)))
    report("calls", "call summary post: p95 ms (target <= 50)", ms(p95(latencies)))
    report("calls", "call summary posts/s", round(len(timed) / wall, 1))
    report("calls", "calls recorded / unmatched", f"{calls} / {unmatched}")
    report("calls", "answers other than 200 (must be 0)", bad)
    report("calls", "leads whose attempts are wrong (must be 0)", wrong)


def _posts(api_key: str) -> tuple[list[bytes], dict[str, int]]:
    """The posts in delivery order (each call's immediate post before its delayed one, calls interleaved), and
    the attempts each lead should end with."""
    rng = random.Random(13)
    posts, expected, pending = [], {}, []
    for n in range(CALLS):
        index = rng.randrange(LEADS)
        unmatched = rng.random() < 0.05
        summary = {
            "monitorUCID": f"9{n:017d}",
            "CampaignName": "Bench_Outbound",
            "CallerID": "98111" + f"{n:05d}" if unmatched else f"70{index:08d}",
            "UUI": f"Nobody {n}" if unmatched else f"Lead {index}",
            "StartTime": f"2026-11-29 {10 + n // 400:02d}:{n // 7 % 60:02d}:{n % 60:02d}",
            "CallDuration": "00:01:10",
            "DialStatus": rng.choice(["answered", "not_answered", "not_answered", "ring"]),
            "CustomerStatus": rng.choice(["answered", "Busy", "NoResponse"]),
            "AgentID": "agent1",
            "Disposition": "",
            "Apikey": api_key,
        }
        if not unmatched:
            expected[summary["UUI"]] = expected.get(summary["UUI"], 0) + 1
        posts.append(_form(summary))
        if rng.random() < 0.8:
            pending.append(_form({**summary, "Disposition": rng.choice(["Sale", "Callback", "Not interested"])}))
        if len(pending) > 5:
            posts.append(pending.pop(0))
        if rng.random() < 0.1:
            posts.append(posts[-1])  # delivered twice
    return posts + pending, expected


def _form(summary: dict) -> bytes:
    return urlencode({"data": json.dumps(summary)}).encode()


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    run(lambda section, name, value: print(f"{section:<8} {name:<70} {value}"))
