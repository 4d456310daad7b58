"""Issue 11, finding 2: a 1.6 KB XLSX killed whatever read it (python-calamine allocates the bounding box and
aborts). Spreadsheets are now measured before calamine opens them; the readers refuse absurd ones with a
message. The readers run in a child process with a memory limit: on the unguarded code the child dies of
SIGABRT, which a test in this process could not survive."""

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import xlwt

from cloudagent.spreadsheet_guard import SheetLimits, SpreadsheetRefused, spreadsheet_check
from tests.security.hostile import ODS_CELL, far_corner_xlsx, inline_cell, ods, xlsx

ROOT = Path(__file__).resolve().parents[2]
LIMITS = SheetLimits()

READ_IN_A_CHILD = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
import django
django.setup()
{body}
"""
IMPORT_READER = """
from campaigns.importing.readers import ImportFileError, open_sheet
try:
    with open_sheet(sys.argv[1], "xlsx") as sheet:
        list(sheet.rows)
except ImportFileError as exc:
    print(exc)
    sys.exit(3)
"""
FAILED_FILE_READER = """
from cloudagent.errors import FailedFileUnavailable
from cloudagent.failed_files import failed_file_read
try:
    failed_file_read(open(sys.argv[1], "rb").read())
except FailedFileUnavailable as exc:
    print(exc)
    sys.exit(3)
"""


def read_in_a_child(body: str, path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", READ_IN_A_CHILD.format(body=body), str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )


@pytest.mark.parametrize("reader", [IMPORT_READER, FAILED_FILE_READER], ids=["lead-import", "failed-file"])
def test_the_far_corner_xlsx_is_refused_with_a_message_not_a_crash(reader, tmp_path):
    path = tmp_path / "leads.xlsx"
    path.write_bytes(far_corner_xlsx())
    assert path.stat().st_size < 2000

    done = read_in_a_child(reader, path)

    assert done.returncode == 3, (done.returncode, done.stderr[-500:])
    assert "A1:XFD100000" in done.stdout and "16,384 columns" in done.stdout


@pytest.mark.parametrize("dimension", [True, False], ids=["declared", "undeclared"])
def test_cells_far_apart_are_refused_whatever_the_dimension_says(dimension):
    with pytest.raises(SpreadsheetRefused, match="leadhub reads at most 200 columns"):
        spreadsheet_check(far_corner_xlsx(dimension=dimension), limits=LIMITS)


def test_a_lying_dimension_alone_is_harmless_and_accepted():
    data = f'<row r="1">{inline_cell("A1", "PhoneNumber")}</row>'
    spreadsheet_check(xlsx(data, dimension="A1:XFD1048576"), limits=LIMITS)


def test_cells_without_references_are_counted_by_position():
    wide = '<row r="1">' + inline_cell(None, "x") * 300 + "</row>"
    with pytest.raises(SpreadsheetRefused, match="at most 200 columns"):
        spreadsheet_check(xlsx(wide), limits=LIMITS)


def test_a_worksheet_anywhere_the_workbook_points_is_checked():
    data = f'<row r="1">{inline_cell("A1", "x")}{inline_cell("ZZ1", "y")}</row>'
    with pytest.raises(SpreadsheetRefused, match="columns"):
        spreadsheet_check(xlsx(data, sheet_path="xl/elsewhere/data.xml"), limits=LIMITS)


def test_too_many_rows_and_too_many_cells_are_refused():
    tall = f'<row r="1">{inline_cell("A1", "x")}</row><row r="2000"><c r="A2000"/></row>'
    with pytest.raises(SpreadsheetRefused, match="at most 1,000 rows"):
        spreadsheet_check(xlsx(tall), limits=SheetLimits(max_rows=1000))
    with pytest.raises(SpreadsheetRefused, match="at most 100 cells"):
        spreadsheet_check(xlsx(tall), limits=SheetLimits(max_cells=100))


def test_a_zip_bomb_is_refused_by_its_unpacked_size():
    data = "".join(f'<row r="{i}">{inline_cell(f"A{i}", "9" * 50)}</row>' for i in range(1, 2000))
    with pytest.raises(SpreadsheetRefused, match="unpacks to over"):
        spreadsheet_check(xlsx(data), limits=SheetLimits(max_xml_bytes=10_000))


def test_an_entity_declaration_is_refused():
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(xlsx(""))) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            content = src.read(item)
            if item.filename == "xl/worksheets/sheet1.xml":
                content = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]>' + content.split(b"?>", 1)[1]
            dst.writestr(item, content)
    with pytest.raises(SpreadsheetRefused, match="DOCTYPE"):
        spreadsheet_check(out.getvalue(), limits=LIMITS)


def test_ods_repeat_counts_are_measured_and_trailing_padding_ignored():
    padded = ods(
        f'<table:table-row>{ODS_CELL}<table:table-cell table:number-columns-repeated="1000000000"/></table:table-row>'
        '<table:table-row table:number-rows-repeated="1000000000"><table:table-cell/></table:table-row>'
    )
    spreadsheet_check(padded, limits=LIMITS)
    repeated = ods(
        '<table:table-row table:number-rows-repeated="100000"><table:table-cell office:value-type="string" '
        'table:number-columns-repeated="16000"><text:p>x</text:p></table:table-cell></table:table-row>'
    )
    with pytest.raises(SpreadsheetRefused, match="16,000 columns"):
        spreadsheet_check(repeated, limits=LIMITS)
    gap = ods(
        f"<table:table-row>{ODS_CELL}"
        f'<table:table-cell table:number-columns-repeated="500"/>{ODS_CELL}</table:table-row>'
    )
    with pytest.raises(SpreadsheetRefused, match="502 columns"):
        spreadsheet_check(gap, limits=LIMITS)


def test_xls_cell_positions_are_measured():
    book = xlwt.Workbook()
    sheet = book.add_sheet("leads")
    sheet.write(0, 0, "PhoneNumber")
    sheet.write(60000, 250, "far")
    buffer = io.BytesIO()
    book.save(buffer)
    with pytest.raises(SpreadsheetRefused, match="60,001 rows x 251 columns"):
        spreadsheet_check(buffer.getvalue(), limits=LIMITS)

    small = xlwt.Workbook()
    small.add_sheet("leads").write(3, 3, "x")
    buffer = io.BytesIO()
    small.save(buffer)
    spreadsheet_check(buffer.getvalue(), limits=LIMITS)


def test_an_ordinary_workbook_passes(tmp_path):
    rows = "".join(
        f'<row r="{i}">{inline_cell(f"A{i}", "9876543210")}{inline_cell(f"B{i}", "Name")}</row>' for i in range(1, 50)
    )
    path = tmp_path / "ok.xlsx"
    path.write_bytes(xlsx(rows, dimension="A1:B49"))
    spreadsheet_check(path, limits=LIMITS)
    spreadsheet_check(b"PhoneNumber\n9876543210\n", limits=LIMITS)  # not a workbook: left to the reader
