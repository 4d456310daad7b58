"""python manage.py import_leads FILE --campaign NAME [--account NAME] [--format F] [--column FIELD=HEADER ...]
[--dry-run] [--json]"""

import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from campaigns.importing.columns import IGNORE
from campaigns.importing.readers import FORMATS, ImportFileError
from campaigns.models import Campaign
from campaigns.services import lead_import_create, lead_import_preview, lead_import_run


class ProgressBar:
    """A one-line bar on a terminal's stderr; stdout stays clean for --json."""

    WIDTH = 30

    def __init__(self, stream):
        self.stream = stream

    def __call__(self, done: int, expected: int) -> None:
        filled = self.WIDTH * done // expected if expected else self.WIDTH
        percent = 100 * done // expected if expected else 100
        self.stream.write(f"\r[{'#' * filled}{'.' * (self.WIDTH - filled)}] {percent:3d}% {done:,} rows")
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")


class Command(BaseCommand):
    help = "Import leads from a CSV, TSV, XLSX, XLS, ODS or JSON file into a campaign (README, Import policy)."

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--campaign", required=True, help="The campaign's name, as in CloudAgent.")
        parser.add_argument("--account", help="The campaign's account, when several accounts have that campaign name.")
        parser.add_argument("--format", default="", choices=sorted(FORMATS), help="When the extension does not say.")
        parser.add_argument(
            "--column",
            action="append",
            default=[],
            metavar="FIELD=HEADER",
            help="Take the file's column HEADER as FIELD (PhoneNumber, Name, a column of the campaign's map, 'extra' "
            "to keep it on the lead, or 'ignore'); repeatable; wins over header aliases and known exports.",
        )
        parser.add_argument("--dry-run", action="store_true", help="Check every row and write nothing.")
        parser.add_argument("--json", action="store_true", help="Print the outcome as one JSON object.")

    def handle(self, *args, **options):
        campaign = self._campaign(options["campaign"], options["account"])
        path = Path(options["file"])
        column_choice = self._column_choice(options["column"])
        bar = ProgressBar(sys.stderr) if sys.stderr.isatty() else None
        import_id = None
        try:
            if options["dry_run"]:
                report = lead_import_preview(
                    campaign=campaign,
                    path=path,
                    file_name=path.name,
                    file_format=options["format"],
                    column_choice=column_choice,
                    progress=bar,
                )
            else:
                lead_import = lead_import_create(
                    campaign=campaign,
                    path=path,
                    file_name=path.name,
                    file_format=options["format"],
                    column_choice=column_choice,
                )
                import_id = lead_import.pk
                report = lead_import_run(lead_import=lead_import, progress=bar)
        except ImportFileError as exc:
            hint = " with --column PhoneNumber=HEADER" if str(exc).endswith("choose one") else ""
            raise CommandError(f"{path.name}: {exc}{hint}") from exc
        finally:
            if bar:
                bar.close()
        columns = {header: field for header, field, _why in report.mapped if field != IGNORE}
        if options["json"]:
            outcome = {**report.counts(), "errors": report.errors, "import_id": import_id}
            self.stdout.write(json.dumps({**outcome, "profile": report.profile, "columns": columns}))
            return
        if report.profile:
            self.stdout.write(f"Recognised: {report.profile}")
        for header, field, why in report.mapped:
            if field != IGNORE:
                self.stdout.write(f"  {field} <- '{header}' ({why})")
        verb = "would import" if options["dry_run"] else "imported"
        self.stdout.write(
            f"{report.rows} rows: {verb} {report.imported}, updated {report.updated}, duplicates {report.duplicates}, "
            f"rejected {report.rejected}, warnings {report.warnings}"
        )
        for line, reason, _cells in report.rejected_rows[:20]:
            self.stdout.write(f"  line {line}: {reason}")
        if report.rejected > 20:
            self.stdout.write(f"  ... {report.rejected - 20} more" + (f" (import {import_id})" if import_id else ""))

    def _column_choice(self, pairs: list[str]) -> dict[str, str]:
        """--column FIELD=HEADER pairs as header -> field (the services' shape)."""
        choice = {}
        for pair in pairs:
            field, sep, header = pair.partition("=")
            if not (sep and field.strip() and header.strip()):
                raise CommandError(f"--column takes FIELD=HEADER, e.g. PhoneNumber=SENDER_MOBILE (got {pair!r})")
            choice[header.strip()] = field.strip()
        return choice

    def _campaign(self, name: str, account: str | None) -> Campaign:
        campaigns = Campaign.objects.filter(name=name).select_related("account")
        if account:
            campaigns = campaigns.filter(account__name=account)
        found = list(campaigns[:2])
        if not found:
            raise CommandError(f"unknown campaign '{name}'" + (f" in account '{account}'" if account else ""))
        if len(found) > 1:
            raise CommandError(f"several accounts have a campaign '{name}'; name one with --account")
        return found[0]
