"""A spreadsheet's size, read before python-calamine opens it.

calamine allocates a sheet's whole bounding box up front, and a failed allocation aborts the process (SIGABRT:
nothing to catch). A 1.6 KB XLSX with cells at A1 and XFD100000 asks for ~52 GB, so a hostile lead file would
kill a web worker, and a hostile failed-rows file (its URL comes in a callback) a callback worker. This module
streams the positions of a sheet's cells, in bounded memory and time, and refuses a
sheet whose bounding box breaks the limits, with a message saying which.

XLSX/XLSM: every worksheet part's cell references <c r=".."> (zipfile + iterparse); the <dimension> element is
not trusted either way, since calamine sizes the sheet from the cells it finds. ODS: content.xml's rows
and cells with their repeat counts. XLS: the BIFF records' row and column numbers (the format caps a sheet at
65,536 x 256, still ~0.5 GB of cells). Pure Python: the import reader and the failed-file reader both use it.
"""

from __future__ import annotations

import io
import posixpath
import re
import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from xml.etree.ElementTree import ParseError, iterparse

from xlrd.compdoc import CompDoc, CompDocError

ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0"

_SHEET_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_REL_NS = "{http://schemas.openxmlformats.org/package/2006/relationships}"
_TABLE_NS = "{urn:oasis:names:tc:opendocument:xmlns:table:1.0}"
_OFFICE_NS = "{urn:oasis:names:tc:opendocument:xmlns:office:1.0}"
_CELL_REF = re.compile(r"\$?([A-Za-z]{1,3})\$?([0-9]{1,7})")
# BIFF cell records: each starts with the row and column as two little-endian uint16.
_BIFF_CELLS = frozenset({0x0006, 0x00BD, 0x00BE, 0x00FD, 0x0201, 0x0203, 0x0204, 0x0205, 0x027E, 0x0406})
_BIFF_MULTI = frozenset({0x00BD, 0x00BE})  # MULRK, MULBLANK: first column, ..., last column at the end


class SpreadsheetRefused(ValueError):
    """The spreadsheet is too big, or built to look small and expand; the message says which limit it breaks."""


@dataclass(frozen=True)
class SheetLimits:
    max_rows: int = 1_048_576
    max_columns: int = 200
    max_cells: int = 12_000_000  # of the bounding box: what calamine allocates (~32 bytes each)
    max_xml_bytes: int = 2 * 1024**3  # uncompressed, over every part read

    @classmethod
    def from_settings(cls, settings) -> SheetLimits:
        """LEADHUB_SHEET_MAX_ROWS, _COLUMNS, _CELLS and _XML_BYTES, where the settings object has them."""
        names = {"max_rows": "ROWS", "max_columns": "COLUMNS", "max_cells": "CELLS", "max_xml_bytes": "XML_BYTES"}
        return cls(
            **{
                field: getattr(settings, f"LEADHUB_SHEET_MAX_{suffix}")
                for field, suffix in names.items()
                if hasattr(settings, f"LEADHUB_SHEET_MAX_{suffix}")
            }
        )


@dataclass
class _Box:
    """The bounding box of a sheet's cells, 1-based, inclusive."""

    top: int = 0
    left: int = 0
    bottom: int = 0
    right: int = 0

    def add(self, row: int, column: int) -> None:
        if not self.top:
            self.top, self.left, self.bottom, self.right = row, column, row, column
            return
        self.top, self.bottom = min(self.top, row), max(self.bottom, row)
        self.left, self.right = min(self.left, column), max(self.right, column)

    def check(self, limits: SheetLimits, where: str) -> None:
        if not self.top:
            return
        rows, columns = self.bottom - self.top + 1, self.right - self.left + 1
        corners = f"{_ref(self.top, self.left)}:{_ref(self.bottom, self.right)}"
        span = f"{where} spans {corners} ({rows:,} rows x {columns:,} columns)"
        if columns > limits.max_columns:
            raise SpreadsheetRefused(f"{span}; leadhub reads at most {limits.max_columns:,} columns")
        if rows > limits.max_rows:
            raise SpreadsheetRefused(f"{span}; leadhub reads at most {limits.max_rows:,} rows")
        if rows * columns > limits.max_cells:
            raise SpreadsheetRefused(f"{span}; leadhub reads at most {limits.max_cells:,} cells")


def _column_number(letters: str) -> int:
    number = 0
    for letter in letters.upper():
        number = number * 26 + ord(letter) - 64
    return number


def _column_letters(number: int) -> str:
    letters = ""
    while number:
        number, rest = divmod(number - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def _ref(row: int, column: int) -> str:
    return f"{_column_letters(column)}{row}"


def spreadsheet_check(source: str | Path | bytes, *, limits: SheetLimits) -> None:
    """Raise SpreadsheetRefused unless every sheet calamine could be asked to load fits the limits. The format is
    told from the content (a ZIP is XLSX or ODS, an OLE2 document XLS); anything else is left to the reader."""
    with _open(source) as stream:
        magic = stream.read(4)
        stream.seek(0)
        if magic == ZIP_MAGIC:
            _zip_check(stream, limits)
        elif magic == OLE_MAGIC:
            _xls_check(stream.read(), limits)


def _open(source: str | Path | bytes) -> BinaryIO:
    return io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115


def _zip_check(stream: BinaryIO, limits: SheetLimits) -> None:
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, OSError):
        return  # not a workbook: the reader says so in its own words
    with archive:
        names = set(archive.namelist())
        budget = _Budget(limits.max_xml_bytes)
        if "content.xml" in names and "xl/workbook.xml" not in names:
            _ods_check(archive, limits, budget)
            return
        for part in sorted(_worksheet_parts(archive, names, budget)):
            _xlsx_sheet_check(archive, part, limits, budget)


@dataclass
class _Budget:
    """Uncompressed bytes still allowed: a ZIP of a few KB can unpack to gigabytes of XML."""

    total: int
    left: int = -1

    def spend(self, info: zipfile.ZipInfo) -> None:
        self.left = self.total if self.left < 0 else self.left
        if info.file_size > self.left:
            raise SpreadsheetRefused(f"the workbook unpacks to over {self.total:,} bytes of XML")
        self.left -= info.file_size


def _parse(archive: zipfile.ZipFile, name: str, budget: _Budget, events=("start", "end")) -> Iterator:
    """iterparse over one part, refusing what no spreadsheet writer produces (a DOCTYPE: entity expansion)."""
    info = archive.getinfo(name)
    budget.spend(info)
    with archive.open(info) as part:
        head = part.peek(1024)[:1024] if hasattr(part, "peek") else b""
        if b"<!DOCTYPE" in head or b"<!ENTITY" in head:
            raise SpreadsheetRefused(f"{name} declares a DOCTYPE, which no spreadsheet needs")
        try:
            yield from iterparse(part, events=events)
        except ParseError as exc:
            raise SpreadsheetRefused(f"{name} is not well-formed XML: {exc}") from None


def _worksheet_parts(archive: zipfile.ZipFile, names: set[str], budget: _Budget) -> set[str]:
    """The worksheets the workbook's relationships name, and any part under xl/worksheets/ besides."""
    parts = {name for name in names if name.startswith("xl/worksheets/") and name.endswith(".xml")}
    if "xl/_rels/workbook.xml.rels" in names:
        for _event, element in _parse(archive, "xl/_rels/workbook.xml.rels", budget, events=("end",)):
            if element.tag == f"{_REL_NS}Relationship" and element.get("Type", "").endswith("/worksheet"):
                target = element.get("Target", "")
                path = target.lstrip("/") if target.startswith("/") else posixpath.normpath(f"xl/{target}")
                if path in names:
                    parts.add(path)
    return parts


def _xlsx_sheet_check(archive: zipfile.ZipFile, part: str, limits: SheetLimits, budget: _Budget) -> None:
    where = f"the sheet {posixpath.basename(part)}"
    cells = _Box()
    row = column = 0
    depth_root = None
    for event, element in _parse(archive, part, budget):
        tag = element.tag
        if event == "start":
            if depth_root is None:
                depth_root = element
            if tag == f"{_SHEET_NS}row":
                number = element.get("r")
                if number is None:
                    row += 1
                elif number.isdigit():
                    row = int(number)
                else:
                    raise SpreadsheetRefused(f"{where} has a row numbered {number[:20]!r}")
                column = 0
            elif tag == f"{_SHEET_NS}c":
                ref = element.get("r")
                if ref:
                    match = _CELL_REF.fullmatch(ref)
                    if match is None:
                        raise SpreadsheetRefused(f"{where} has a cell named {ref[:20]!r}")
                    column = _column_number(match[1])
                    cell_row = int(match[2])
                else:
                    column, cell_row = column + 1, row
                cells.add(cell_row, column)
                if cells.right - cells.left >= limits.max_columns or cells.bottom - cells.top >= limits.max_rows:
                    cells.check(limits, where)  # fail early, before reading the rest
        elif tag == f"{_SHEET_NS}row" and depth_root is not None:
            element.clear()
            depth_root.clear()  # keep memory flat: nothing above the current row is kept
    cells.check(limits, where)


def _ods_check(archive: zipfile.ZipFile, limits: SheetLimits, budget: _Budget) -> None:
    """Rows and cells carry repeat counts (number-rows-repeated, number-columns-repeated); a repeated *empty*
    run at the end of a row or a table is padding writers add, and is not counted."""
    box = _Box()
    table = 0
    row_top = 0  # first row number of the current row element
    row_repeat = 1
    column = 0
    row_right = 0
    root = None
    for event, element in _parse(archive, "content.xml", budget):
        tag = element.tag
        if event == "start":
            if root is None:
                root = element
            if tag == f"{_TABLE_NS}table":
                if table:
                    box.check(limits, f"the sheet {table}")
                table += 1
                box, row_top, row_repeat = _Box(), 0, 1
            elif tag == f"{_TABLE_NS}table-row":
                row_top += row_repeat
                row_repeat = _repeat(element.get(f"{_TABLE_NS}number-rows-repeated"))
                column = row_right = 0
            continue
        if tag in (f"{_TABLE_NS}table-cell", f"{_TABLE_NS}covered-table-cell"):
            repeat = _repeat(element.get(f"{_TABLE_NS}number-columns-repeated"))
            start = column + 1
            column += repeat
            if _ods_cell_has_content(element):
                row_right = column
                box.add(row_top, start)
            element.clear()
        elif tag == f"{_TABLE_NS}table-row":
            if row_right:
                box.add(row_top + row_repeat - 1, row_right)
                box.check(limits, f"the sheet {table}")
            element.clear()
            if root is not None:
                root.clear()
    if table:
        box.check(limits, f"the sheet {table}")


def _repeat(value: str | None) -> int:
    if not value:
        return 1
    if not value.isdigit():
        raise SpreadsheetRefused(f"a repeat count {value[:20]!r} is not a number")
    return max(int(value), 1)


def _ods_cell_has_content(element) -> bool:
    return bool(element.get(f"{_OFFICE_NS}value-type") or len(element) or (element.text or "").strip())


def _xls_check(content: bytes, limits: SheetLimits) -> None:
    """Scan the Workbook stream's BIFF records for cell positions; one box per worksheet (BOF ... EOF)."""
    try:
        document = CompDoc(content, logfile=io.StringIO())
        stream = document.get_named_stream("Workbook") or document.get_named_stream("Book")
    except (CompDocError, struct.error, IndexError, ValueError):
        return  # not a workbook: the reader says so in its own words
    if not stream:
        return
    box, sheet, offset = _Box(), 0, 0
    while offset + 4 <= len(stream):
        kind, length = struct.unpack_from("<HH", stream, offset)
        data = stream[offset + 4 : offset + 4 + length]
        offset += 4 + length
        if kind == 0x0809:  # BOF: a new substream
            box.check(limits, f"the sheet {sheet}")
            box, sheet = _Box(), sheet + 1
        elif kind in _BIFF_CELLS and len(data) >= 4:
            row, column = struct.unpack_from("<HH", data)
            box.add(row + 1, column + 1)
            if kind in _BIFF_MULTI and len(data) >= 6:
                (last,) = struct.unpack_from("<H", data, len(data) - 2)
                box.add(row + 1, last + 1)
    box.check(limits, f"the sheet {sheet}")
