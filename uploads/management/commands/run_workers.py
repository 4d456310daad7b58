"""Every worker process leadhub needs on one machine, kept running: a child that dies is started again (with
back-off), never taking the others down with it."""

import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand

from campaigns.queues import IMPORTS_QUEUE
from uploads.queues import CALLBACKS_QUEUE, DEFAULT_QUEUE

# Sending is the dispatcher's (run_dispatcher), so no RQ queue is held by a push: callbacks and imports never
# wait behind one.
QUEUES = (DEFAULT_QUEUE, CALLBACKS_QUEUE, IMPORTS_QUEUE)
# Pauses before starting a dead child again, the last one repeating; a child that ran this long is healthy
# again and starts from the first pause.
RESTART_DELAYS = (1, 2, 5, 10, 30)
HEALTHY_AFTER = 60.0


class Child:
    def __init__(self, name: str, command: list[str]):
        self.name, self.command = name, command
        self.process: subprocess.Popen | None = None
        self.started = 0.0
        self.restarts = 0
        self.restart_at: float | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, cwd=settings.BASE_DIR)
        self.started = time.monotonic()
        self.restart_at = None


class Command(BaseCommand):
    help = "Run the dispatcher and one RQ worker per leadhub queue; restart any of them that dies."
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument(
            "--dispatchers",
            type=int,
            default=settings.LEADHUB_DISPATCH_PROCESSES,
            help="Dispatch processes (each serves many accounts; LEADHUB_DISPATCH_PROCESSES).",
        )

    def handle(self, *args, **opts):
        python = [sys.executable, "manage.py"]
        children = [Child(queue, [*python, "rqworker", queue, "--with-scheduler"]) for queue in QUEUES]
        children += [Child(f"dispatcher-{n + 1}", [*python, "run_dispatcher"]) for n in range(opts["dispatchers"])]
        for child in children:
            child.start()
        self.stdout.write(f"started {len(children)} workers: {', '.join(child.name for child in children)}")
        stopping = []

        def stop(*_):
            stopping.append(True)
            for child in children:
                if child.process.poll() is None:
                    child.process.send_signal(signal.SIGTERM)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        while not stopping:
            self._supervise(children)
            time.sleep(0.5)
        for child in children:
            child.process.wait()

    def _supervise(self, children: list[Child]) -> None:
        now = time.monotonic()
        for child in children:
            code = child.process.poll()
            if code is None:
                continue
            if child.restart_at is None:
                if now - child.started >= HEALTHY_AFTER:
                    child.restarts = 0
                delay = RESTART_DELAYS[min(child.restarts, len(RESTART_DELAYS) - 1)]
                child.restart_at = now + delay
                self.stderr.write(f"{child.name} stopped (exit {code}); starting it again in {delay} s")
            elif now >= child.restart_at:
                child.restarts += 1
                child.start()
