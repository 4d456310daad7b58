"""The dispatch service of one process (uploads/dispatcher.py): `run_workers` starts one; start more, on more
machines, for more capacity — they share the accounts through their leases."""

import json
import signal

from django.core.management.base import BaseCommand

from uploads.dispatcher import DispatchLoop


class Command(BaseCommand):
    help = "Send every account's batches at its CloudAgent pace, for the accounts this process holds."
    # It must start while the database is down, and wait for it: checks would fail first.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--threads", type=int, help="Sends in flight at once (LEADHUB_DISPATCH_THREADS).")
        parser.add_argument("--until-idle", action="store_true", help="Stop once no account has batches left to send.")

    def handle(self, *args, **opts):
        loop = DispatchLoop(threads=opts["threads"], until_idle=opts["until_idle"])
        signal.signal(signal.SIGTERM, lambda *_: loop.stop())
        signal.signal(signal.SIGINT, lambda *_: loop.stop())
        report = loop.run()
        if opts["until_idle"]:
            self.stdout.write(json.dumps({"outcomes": report.outcomes, "recovered": report.recovered}))
