"""`manage.py cloudagent_emulator`: run the CloudAgent emulator with the same flags as `python -m emulator`.

Only a launcher: the emulator never imports Django (emulator/__init__.py says why), so the flags are the
emulator's own and the parsed values go to the same create_server() and serve() its main() uses."""

from django.core.management.base import BaseCommand, CommandError

from emulator import server as emulator_server


class Command(BaseCommand):
    help = "Run the CloudAgent Add Campaign Bulk Data (V4) emulator (loopback, port 8900 by default)."
    requires_system_checks = []  # it touches neither the database nor the models

    def add_arguments(self, parser):
        emulator_server.add_arguments(parser)

    def handle(self, *args, **options):
        try:
            server = emulator_server.create_server(options)
        except (ValueError, OSError) as exc:
            raise CommandError(str(exc)) from exc
        emulator_server.serve(server)
