"""CloudAgent's failed-rows file (docs/cloudagent-contract.md, "Failed-rows file"): which rows of a batch it did
not add, and why. Its format is undocumented: CSV or a spreadsheet, with the request's headers and a reason column,
so the phone column is found by its header (any case, any of the phone header aliases)."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

import python_calamine

from cloudagent.callbacks import provider_text
from cloudagent.errors import FailedFileUnavailable
from cloudagent.rules import PHONE_HEADERS, header_key, header_line_delimiter
from cloudagent.spreadsheet_guard import OLE_MAGIC, ZIP_MAGIC, SheetLimits, SpreadsheetRefused, spreadsheet_check

REASON_HEADERS = (
    "reason",
    "failurereason",
    "failedreason",
    "errorreason",
    "errormessage",
    "error",
    "remarks",
    "remark",
    "comments",
    "comment",
    "description",
    "message",
    "status",
)
_PHONE_KEYS = tuple(header_key(alias) for alias in PHONE_HEADERS)
_NOT_ALNUM = re.compile(r"[^a-z0-9]")
HEADER_SCAN_ROWS = 10  # a spreadsheet may open with a title row or two before the headers


@dataclass(frozen=True)
class FailedFileRows:
    phone_header: str
    reason_header: str
    rows: list[tuple[str, str]]  # (phone as written in the file, reason or "")


def failed_file_read(content: bytes, *, limits: SheetLimits | None = None) -> FailedFileRows:
    """Rows of a failed file, CSV or a spreadsheet; raises FailedFileUnavailable when it cannot tell which rows
    failed. A spreadsheet is measured first (`limits`): its URL comes in a callback, and calamine aborts the
    process on a sheet too big to allocate."""
    if content[:4] in (ZIP_MAGIC, OLE_MAGIC):
        try:
            spreadsheet_check(content, limits=limits or SheetLimits())
        except SpreadsheetRefused as exc:
            raise FailedFileUnavailable(f"the failed file is refused: {exc}") from exc
        try:
            workbook = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(content))
            table = workbook.get_sheet_by_index(0).to_python()
        except Exception as exc:  # calamine raises several unrelated types for a damaged file
            raise FailedFileUnavailable(f"the failed file is not a spreadsheet we can read: {exc}") from exc
    else:
        try:
            table = _csv_table(content)
        except csv.Error as exc:  # e.g. an unclosed quote: the file cannot tell which rows failed
            raise FailedFileUnavailable(f"the failed file cannot be read as CSV: {exc}") from exc
    for index, header in enumerate(table[:HEADER_SCAN_ROWS]):
        names = [_NOT_ALNUM.sub("", _cell(value).lower()) for value in header]
        phone = next((names.index(alias) for alias in _PHONE_KEYS if alias in names), None)
        if phone is None:
            continue
        reason = next((names.index(alias) for alias in REASON_HEADERS if alias in names), None)
        rows = [
            (_cell(row[phone]), _cell(row[reason]) if reason is not None and reason < len(row) else "")
            for row in table[index + 1 :]
            if phone < len(row) and _cell(row[phone])
        ]
        return FailedFileRows(
            phone_header=_cell(header[phone]),
            reason_header=_cell(header[reason]) if reason is not None else "",
            rows=rows,
        )
    seen = ", ".join(_cell(v) for v in table[0] if _cell(v))[:200] if table else "none, the file is empty"
    raise FailedFileUnavailable(f"the failed file has no phone number column (headers: {seen})")


def _csv_table(content: bytes) -> list[list[str]]:
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = content.decode("cp1252", "replace")
    # The header line decides: a reason column full of commas would fool a sniffer reading the whole sample.
    delimiter = header_line_delimiter(text.split("\n", 1)[0])
    return list(csv.reader(io.StringIO(text), delimiter=delimiter))


def _cell(value) -> str:
    """Spreadsheets hand numbers back as floats: 9812345678.0 is the phone 9812345678."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return provider_text(value)
