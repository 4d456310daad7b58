"""Lead exports that stream: a million leads leave in constant memory, where import-export's stock export builds
the whole file (a tablib Dataset, then the file) before sending a byte. The columns, their rendering and the
formula escaping stay the export resource's (campaigns/resources.py)."""

import csv
import tempfile
from collections.abc import Iterator, Sequence

from openpyxl import Workbook

from campaigns.resources import LeadExportResource

CHUNK = 2000


def lead_export_rows(queryset, *, fields: Sequence[str] | None = None) -> Iterator[list]:
    """The header, then one row per lead, read CHUNK leads at a time; `fields` as the export form chose them."""
    resource = LeadExportResource()
    yield resource.get_export_headers(selected_fields=fields)
    leads = queryset.select_related("campaign", "upload_transaction").order_by("pk").iterator(chunk_size=CHUNK)
    for lead in leads:
        yield resource.export_resource(lead, selected_fields=fields)


class _Line:
    """A file-like object whose write() hands back the CSV line, so csv.writer can feed a streaming response."""

    def write(self, line: str) -> str:
        return line


def leads_export_csv(queryset, *, fields: Sequence[str] | None = None) -> Iterator[bytes]:
    """UTF-8 with a byte-order mark, so Excel opens Indian names and reasons as written."""
    writer = csv.writer(_Line())
    yield "\ufeff".encode()
    for row in lead_export_rows(queryset, fields=fields):
        yield writer.writerow(["" if value is None else value for value in row]).encode()


def leads_export_xlsx(queryset, *, fields: Sequence[str] | None = None):
    """An XLSX file in a temporary file (openpyxl's write-only mode keeps one row in memory), opened for reading."""
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Leads")
    for row in lead_export_rows(queryset, fields=fields):
        sheet.append(row)
    handle = tempfile.TemporaryFile()
    workbook.save(handle)
    handle.seek(0)
    return handle
