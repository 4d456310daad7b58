"""What the benchmarks share: a PostgreSQL database of their own, Django set up on it, an emulator process."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The project, and tests/private_redis.py, importable also when a bench runs on its own.
sys.path.insert(0, str(ROOT))
PG_ADMIN_URL = os.environ.get("LEADHUB_BENCH_PG", "postgres://postgres@127.0.0.1:5432")
# One key for the bench process (DEBUG on) and its gunicorn (DEBUG off): what one encrypts the other must read.
FIELD_ENCRYPTION_KEY = "YmVuY2gtb25seS1maWVsZC1lbmNyeXB0aW9uLWtleTA="


def use_database(name: str, *, redis_db: int = 14, redis_url: str | None = None) -> str:
    """Point this process (and its children) at a fresh PostgreSQL database and a Redis db of the bench's own
    (`redis_url`, e.g. a private redis-server, else db `redis_db` of the local one), then set Django up and
    migrate. Returns the DATABASE_URL."""
    import psycopg

    with psycopg.connect(f"{PG_ADMIN_URL}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{PG_ADMIN_URL}/{name}"
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("SECRET_KEY", "bench-only")
    os.environ["LEADHUB_FIELD_ENCRYPTION_KEYS"] = FIELD_ENCRYPTION_KEY
    os.environ.setdefault("CLOUDAGENT_FETCH_ALLOW_NETWORKS", "127.0.0.1/32")  # the emulator's failed files
    os.environ["DJANGO_DEBUG"] = "1"
    os.environ["REDIS_URL"] = redis_url or f"redis://127.0.0.1:6379/{redis_db}"
    os.environ["DJANGO_SETTINGS_MODULE"] = "leadhub.settings"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    import redis

    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
    return url


def drop_database(name: str) -> None:
    from django.db import connections

    connections.close_all()
    import psycopg

    with psycopg.connect(f"{PG_ADMIN_URL}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_emulator(*args: str) -> tuple[subprocess.Popen, str]:
    """A CloudAgent emulator on a free loopback port; returns the process and its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "emulator", "--port", "0", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # its access log; the bench reads /_emulator/inspect instead
        text=True,
    )
    line = process.stdout.readline().strip()
    return process, line.rsplit(" ", 1)[-1]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(port: int, database_url: str, *, workers: int = 2) -> subprocess.Popen:
    """leadhub under gunicorn (sync workers, DEBUG off) on a loopback port, answering before this returns."""
    import time
    import urllib.error
    import urllib.request

    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DJANGO_DEBUG": "0",
        "SECRET_KEY": "bench-only-secret-key",
        "LEADHUB_FIELD_ENCRYPTION_KEYS": FIELD_ENCRYPTION_KEY,
        # The benches serve failed-rows files over plain http on loopback.
        "LEADHUB_ALLOW_PLAIN_HTTP": "1",
        "CLOUDAGENT_FETCH_ALLOW_NETWORKS": "127.0.0.1/32",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "leadhub.wsgi", "-w", str(workers), "-b", f"127.0.0.1:{port}"]
        + ["--log-level", "warning"],
        cwd=ROOT,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10).close()
                return process
            except urllib.error.HTTPError:
                return process  # it answers (Redis may be unhealthy for /healthz; the bench needs none)
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("gunicorn did not answer within 60 s")
    except BaseException:
        process.terminate()
        process.wait(timeout=30)
        raise


def post_new_connection(url: str, body: bytes, content_type: str) -> tuple[float, int]:
    """One POST on a connection of its own, as CloudAgent calls a webhook; returns (seconds, HTTP status)."""
    import time
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        exc.read()
        status = exc.code
    return time.perf_counter() - started, status


def p95(values: list[float]) -> float:
    import statistics

    return statistics.quantiles(values, n=20)[-1]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)
