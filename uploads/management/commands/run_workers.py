import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand

from campaigns.queues import IMPORTS_QUEUE
from uploads.queues import CALLBACKS_QUEUE, DEFAULT_QUEUE, PUSH_QUEUE

# Dispatchers hold a `push` worker for as long as their account has batches waiting, so `push` gets workers
# of its own (one per account pushing at once); callbacks and imports never wait behind a push.
QUEUES = (DEFAULT_QUEUE, CALLBACKS_QUEUE, IMPORTS_QUEUE)


class Command(BaseCommand):
    help = "Run one RQ worker for every leadhub queue (several for `push`), each with RQ's scheduler."

    def add_arguments(self, parser):
        parser.add_argument("--push-workers", type=int, default=2, help="Accounts that can push at once.")

    def handle(self, *args, **opts):
        # RQ's scheduler only moves the scheduled jobs of its worker's own queues (back-offs, retries, handovers),
        # so every worker runs one; RQ's lock keeps it to one per queue.
        queues = [*QUEUES, *[PUSH_QUEUE] * opts["push_workers"]]
        commands = [[sys.executable, "manage.py", "rqworker", queue, "--with-scheduler"] for queue in queues]
        workers = [subprocess.Popen(command, cwd=settings.BASE_DIR) for command in commands]
        self.stdout.write(f"started {len(workers)} RQ workers: {', '.join(c[3] for c in commands)}")

        def stop(*_):
            for worker in workers:
                if worker.poll() is None:
                    worker.send_signal(signal.SIGTERM)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        while any(worker.poll() is None for worker in workers):
            if any(worker.poll() is not None for worker in workers):
                self.stderr.write("a worker stopped; stopping the others")
                stop()
            time.sleep(0.5)
        for worker in workers:
            worker.wait()
