"""Readers of lead files: CSV/TSV (any common encoding and delimiter), XLSX/XLS/ODS and JSON, opened as a Sheet
that yields one row at a time, so memory stays flat whatever the file's size (CSV through the csv module,
spreadsheets through python-calamine)."""

import csv
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from itertools import chain, islice
from pathlib import Path

from python_calamine import CalamineError, CalamineWorkbook

from campaigns.importing.encodings import FileEncodingError, detect_encoding
from campaigns.importing.guard import ImportLimits, header_problem, json_depth_problem, rows_problem, sheet_limits
from cloudagent.rules import sniff_delimiter
from cloudagent.spreadsheet_guard import SpreadsheetRefused, spreadsheet_check

SNIFF_CHARS = 64 * 1024

# File extension -> reader; the admin's format choice and the CLI's --format use the same names.
FORMATS = {
    "csv": "csv",
    "txt": "csv",
    "tsv": "tsv",
    "xlsx": "xlsx",
    "xlsm": "xlsx",
    "xls": "xls",
    "ods": "ods",
    "json": "json",
}

# Header aliases (issue 6): compared after dropping case, spaces, underscores, dots and hyphens.


class ImportFileError(ValueError):
    """A problem with the file as a whole (unreadable, empty, no phone column): nothing is imported."""


def detect_format(file_name: str, chosen: str = "") -> str:
    """The reader for a file: the format chosen, or else the file name's extension."""
    fmt = (chosen or Path(file_name).suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise ImportFileError(f"'{file_name}' is not a format leadhub reads (CSV, TSV, XLSX, XLS, ODS or JSON)")
    return FORMATS[fmt]


@dataclass
class Sheet:
    """A file opened for reading: its header row and an iterator of (line, cells) for the rows below it.

    Cells are str, or date/datetime for spreadsheet dates. `line` is the row as a spreadsheet numbers it (the header
    of a CSV or XLSX is line 1; a JSON list's first object is line 2, as if it had a header)."""

    header: list[str]
    rows: Iterator[tuple[int, list]]
    rows_estimate: int

    def peek(self, count: int) -> list[list]:
        """The cells of the first `count` rows, which `rows` still yields: what the column proposal looks at."""
        first = list(islice(self.rows, count))
        self.rows = chain(first, self.rows)
        return [cells for _line, cells in first]


def _cell(value: object) -> object:
    """A spreadsheet or JSON value as text; dates stay dates. Excel stores 9876543210 as 9876543210.0."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, date):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def cell_text(value: object) -> str:
    if value.__class__ is str:  # nearly every cell: the quick way out
        return value
    if isinstance(value, datetime):
        return value.isoformat(sep=" ") if value.time() else value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def _sheet(numbered_rows: Iterator[tuple[int, list]], estimate: int) -> Sheet:
    """Split off the header: the first row with anything in it."""
    for line, cells in numbered_rows:
        if any(str(c).strip() for c in cells):
            header = [str(cell_text(c)).strip() for c in cells]
            return Sheet(header=header, rows=numbered_rows, rows_estimate=max(estimate - line, 0))
    raise ImportFileError("the file is empty: it has no header row")


def _detect_encoding(path: Path) -> tuple[str, int]:
    """The file's encoding (campaigns.importing.encodings: byte-order marks, UTF-16/32 without one, UTF-8, legacy
    code pages) and its number of lines, the progress bar's estimate."""
    try:
        found = detect_encoding(path)
    except FileEncodingError as exc:
        raise ImportFileError(str(exc)) from None
    return found.codec, found.lines


@contextmanager
def _csv_sheet(path: Path, delimiter: str | None = None) -> Iterator[Sheet]:
    encoding, lines = _detect_encoding(path)
    if delimiter is None:
        with path.open(encoding=encoding, newline="") as f:
            delimiter = sniff_delimiter(f.read(SNIFF_CHARS))
    with path.open(encoding=encoding, newline="") as f:
        reader = csv.reader(f, delimiter=delimiter)

        def numbered():
            """Records numbered by the physical line they start on: a quoted cell may span several lines, and
            the operator looks for a rejected row in a text editor or a spreadsheet by that number."""
            end = 0
            try:
                for cells in reader:
                    start, end = end + 1, reader.line_num
                    yield start, cells
            except csv.Error as exc:
                raise ImportFileError(f"line {end + 1} cannot be read as CSV: {exc}") from exc

        yield _sheet(numbered(), lines)


@contextmanager
def _workbook_sheet(path: Path) -> Iterator[Sheet]:
    """The first sheet of an XLSX, XLS or ODS workbook, through python-calamine (~15x faster than openpyxl).
    calamine holds the sheet's cells in memory (about 0.3 KB a row; a sheet has at most 1,048,576 rows), and
    aborts the process when a sheet's bounding box cannot be allocated: the guard measures it first."""
    try:
        spreadsheet_check(path, limits=sheet_limits())
    except SpreadsheetRefused as exc:
        raise ImportFileError(str(exc)) from exc
    try:
        workbook = CalamineWorkbook.from_path(str(path))
        sheet = workbook.get_sheet_by_index(0)
    except (CalamineError, OSError, ValueError) as exc:
        raise ImportFileError(f"the file cannot be read as a spreadsheet: {exc}") from exc
    try:
        # calamine yields rows from the sheet's first row, blank ones included, so positions are row numbers.
        rows = ((i, [_cell(v) for v in row]) for i, row in enumerate(sheet.iter_rows(), start=1))
        yield _sheet(rows, sheet.total_height)
    finally:
        workbook.close()


@contextmanager
def _json_sheet(path: Path) -> Iterator[Sheet]:
    """A JSON list of objects, read whole (as tablib does): JSON lead lists come from APIs and are small. The
    header is every key, in the order keys first appear."""
    try:
        with path.open(encoding="utf-8-sig") as f:
            text = f.read()
    except UnicodeDecodeError as exc:
        raise ImportFileError(f"the file cannot be read as JSON: {exc}") from exc
    if problem := json_depth_problem(text, ImportLimits.from_settings()):
        raise ImportFileError(problem)
    try:
        items = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ImportFileError(f"the file cannot be read as JSON: {str(exc)[:200]}") from None
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ImportFileError("a JSON file must hold a list of objects, one per lead")
    if not items:
        raise ImportFileError("the file is empty: the JSON list has no objects")
    header = list(dict.fromkeys(key for item in items for key in item))
    rows = ((i + 2, [_cell(item.get(key)) for key in header]) for i, item in enumerate(items))
    yield Sheet(header=header, rows=rows, rows_estimate=len(items))


@contextmanager
def open_sheet(path: str | Path, file_format: str) -> Iterator[Sheet]:
    path = Path(path)
    if not path.is_file():
        raise ImportFileError(f"'{path}' is not a readable file")
    if file_format == "tsv":
        opened = _csv_sheet(path, delimiter="\t")
    elif file_format == "csv":
        opened = _csv_sheet(path)
    elif file_format == "json":
        opened = _json_sheet(path)
    else:
        opened = _workbook_sheet(path)
    with opened as sheet:
        limits = ImportLimits.from_settings()
        if problem := header_problem(sheet.header, limits) or rows_problem(sheet.rows_estimate, limits):
            raise ImportFileError(problem)
        yield sheet
