"""The lead import engine: stream a file row by row, map its headers to the campaign's columns, check every row
against the import policy (README, Import policy), drop duplicates and write new leads in chunks.

Memory stays flat: rows are read one at a time (CSV through the csv module, spreadsheets through python-calamine)
and written CHUNK_ROWS at a time; what grows is one phone number per accepted row for the in-file duplicate check,
and the first PREVIEW_ROWS rows of each kind a report keeps to show. Campaign duplicates are looked up once per
chunk in the database, so a campaign of millions of leads costs no memory. Services call this module; it never
touches the LeadImport record (campaigns.services owns that).
"""

import codecs
import csv
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from python_calamine import CalamineError, CalamineWorkbook

from campaigns.import_guard import (
    ImportLimits,
    delimiter_guess,
    header_problem,
    json_depth_problem,
    row_problem,
    rows_problem,
)
from campaigns.models import Campaign, Lead, LeadStatus
from campaigns.normalize import PhoneError, clean_name, format_phone, normalize_phone
from cloudagent.spreadsheet_guard import SheetLimits, SpreadsheetRefused, spreadsheet_check

CHUNK_ROWS = 5000
# contract.md, Limits: "2000 characters per row including all headers".
MAX_ROW_CHARS = 2000
# Rows of each kind (new, updated, duplicate, rejected, warning) a report keeps to show; its counts are complete.
PREVIEW_ROWS = 1000
ENCODING_PASS_BYTES = 1 << 20
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
ALIASES = {
    "PhoneNumber": (
        "phone",
        "phone number",
        "mobile",
        "mobile number",
        "mobile no",
        "contact",
        "contact number",
        "contact no",
        "msisdn",
        "number",
    ),
    "Name": ("name", "full name", "customer name", "lead name"),
    "Priority": ("priority",),
    "ExpiryDate": ("expiry", "expiry date", "expires"),
    "AgentId": ("agent", "agent id"),
    "skill": ("skill",),
}
_HEADER_NOISE = re.compile(r"[\s_.\-]+")
_DAY_FIRST = re.compile(r"(\d{1,2})[/-](\d{1,2})[/-](\d{4})")
_ISO_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_WHOLE_NUMBER = re.compile(r"\d+(?:\.0*)?")

# Lead columns the engine writes, in the order of the row tuples it builds.
_ROW_FIELDS = ("phone_number", "name", "priority", "expiry_date", "agent_id", "skill", "extra", "source_line")
# Standard CloudAgent header -> Lead field.
_FIELD_OF = {
    "Name": "name",
    "Priority": "priority",
    "ExpiryDate": "expiry_date",
    "AgentId": "agent_id",
    "skill": "skill",
}


class ImportFileError(ValueError):
    """A problem with the file as a whole (unreadable, empty, no phone column): nothing is imported."""


def header_key(header: object) -> str:
    return _HEADER_NOISE.sub("", str(header)).lower()


def detect_format(file_name: str, chosen: str = "") -> str:
    """The reader for a file: the format chosen, or else the file name's extension."""
    fmt = (chosen or Path(file_name).suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise ImportFileError(f"'{file_name}' is not a format leadhub reads (CSV, TSV, XLSX, XLS, ODS or JSON)")
    return FORMATS[fmt]


# ---------------------------------------------------------------------------------------------------- reading


@dataclass
class Sheet:
    """A file opened for reading: its header row and an iterator of (line, cells) for the rows below it.

    Cells are str, or date/datetime for spreadsheet dates. `line` is the row as a spreadsheet numbers it (the header
    of a CSV or XLSX is line 1; a JSON list's first object is line 2, as if it had a header)."""

    header: list[str]
    rows: Iterator[tuple[int, list]]
    rows_estimate: int


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
    """UTF-8 (with or without BOM) if every byte of the file decodes as UTF-8, else Windows-1252, else Latin-1
    (which decodes anything). The whole file is checked, in one cheap pass, so a stray byte on line 90,000 cannot
    stop the import half-way. Also returns the number of lines, as the progress bar's estimate."""
    with path.open("rb") as f:
        head = f.read(3)
        for encoding in ("utf-8", "cp1252"):
            decoder = codecs.getincrementaldecoder(encoding)()
            f.seek(0)
            lines, last = 0, b"\n"
            try:
                while chunk := f.read(ENCODING_PASS_BYTES):
                    decoder.decode(chunk)
                    lines += chunk.count(b"\n")
                    last = chunk[-1:]
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                continue
            if encoding == "utf-8" and head == codecs.BOM_UTF8:
                encoding = "utf-8-sig"
            return encoding, lines + (last != b"\n")
    return "latin-1", lines + (last != b"\n")


def _sniff_delimiter(sample: str) -> str:
    """Comma, semicolon, tab or pipe: counted, not sniffed (csv.Sniffer is superlinear on quotes)."""
    return delimiter_guess(sample)


@contextmanager
def _csv_sheet(path: Path, delimiter: str | None = None) -> Iterator[Sheet]:
    encoding, lines = _detect_encoding(path)
    if delimiter is None:
        with path.open(encoding=encoding, newline="") as f:
            delimiter = _sniff_delimiter(f.read(SNIFF_CHARS))
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
        spreadsheet_check(path, limits=SheetLimits.from_settings(settings))
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


# ---------------------------------------------------------------------------------------------------- headers


@dataclass
class ColumnMapping:
    """Where each of the campaign's columns is in the file; the other columns are ignored with a warning."""

    index: dict[str, int]
    warnings: list[str]


def map_columns(header: list[str], column_map: list[str]) -> ColumnMapping:
    """The campaign's own header names win over the aliases, so a custom column called "Contact" stays custom."""
    by_key = {header_key(name): name for name in column_map}
    aliases = {header_key(alias): std for std, names in ALIASES.items() for alias in (std, *names)}
    index: dict[str, int] = {}
    warnings = []
    for position, name in enumerate(header):
        key = header_key(name)
        if not key:
            warnings.append(f"column {position + 1} has no header; ignored")
            continue
        target = by_key.get(key) or aliases.get(key)
        if target is None or target not in column_map:
            warnings.append(f"column '{name}' is not in the campaign's column map; ignored")
        elif target in index:
            warnings.append(f"column '{name}' ignored: column '{header[index[target]]}' already gives {target}")
        else:
            index[target] = position
    if "PhoneNumber" not in index:
        expected = ", ".join(["PhoneNumber", *ALIASES["PhoneNumber"]])
        found = ", ".join(f"'{h}'" for h in header if h) or "none"
        raise ImportFileError(f"no phone number column: the header row needs one of {expected} (it has {found})")
    return ColumnMapping(index=index, warnings=warnings)


# ---------------------------------------------------------------------------------------------------- rows


class _Rejected(Exception):
    pass


def _priority(value: object) -> int | None:
    text = cell_text(value).strip()
    if not text:
        return None
    if _WHOLE_NUMBER.fullmatch(text):
        number = int(text.split(".", 1)[0])
        if 1 <= number <= 99:
            return number
    raise _Rejected(f"Priority '{text}' is not a whole number from 1 to 99")


def _expiry(value: object, today: date) -> date | None:
    if isinstance(value, datetime):
        day = value.date()
    elif isinstance(value, date):
        day = value
    else:
        text = value.strip()
        if not text:
            return None
        try:
            if m := _ISO_DATE.fullmatch(text):
                day = date(int(m[1]), int(m[2]), int(m[3]))
            elif m := _DAY_FIRST.fullmatch(text):
                day = date(int(m[3]), int(m[2]), int(m[1]))
            else:
                raise ValueError
        except ValueError:
            raise _Rejected(
                f"ExpiryDate '{text}' is not a date (YYYY-MM-DD, DD/MM/YYYY or DD-MM-YYYY, day first)"
            ) from None
    if day < today:
        raise _Rejected(f"ExpiryDate {day.isoformat()} is in the past")
    return day


def _limited(header: str, value: str, limit: int) -> str:
    if len(value) > limit:
        raise _Rejected(f"{header} is longer than {limit} characters")
    return value


@dataclass
class ImportReport:
    """What an import did, or would do (a dry run): complete counts, and the first PREVIEW_ROWS rows of each kind.

    new_rows and updated_rows hold (line, values as CloudAgent will get them, in `columns` order); duplicate_rows
    (line, phone, reason); rejected_rows (line, reason, cells); warning_list (line or None, message)."""

    columns: list[str]
    header: list[str] = field(default_factory=list)
    rows: int = 0
    imported: int = 0
    updated: int = 0
    duplicates: int = 0
    rejected: int = 0
    warnings: int = 0
    new_rows: list = field(default_factory=list)
    updated_rows: list = field(default_factory=list)
    duplicate_rows: list = field(default_factory=list)
    rejected_rows: list = field(default_factory=list)
    warning_list: list = field(default_factory=list)

    @property
    def errors(self) -> list[dict]:
        return [{"line": line, "reason": reason} for line, reason, _cells in self.rejected_rows]

    def warn(self, line: int | None, message: str) -> None:
        self.warnings += 1
        if len(self.warning_list) < PREVIEW_ROWS:
            self.warning_list.append((line, message))

    def counts(self) -> dict:
        return {
            "rows": self.rows,
            "imported": self.imported,
            "updated": self.updated,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "warnings": self.warnings,
        }


@dataclass
class _Row:
    line: int
    values: tuple  # in _ROW_FIELDS order
    sent: dict  # CloudAgent header -> text as sent

    @property
    def phone(self) -> str:
        return self.values[0]


class _LeadFileImport:
    """One pass over a sheet for one campaign. A real run commits each chunk in its own transaction, so the
    progress it reports is visible to the admin and a failure keeps what was written (the import can be undone)."""

    def __init__(
        self,
        *,
        campaign: Campaign,
        sheet: Sheet,
        lead_import_id: int | None,
        dry_run: bool,
        on_reject: Callable[[int, list, str], None] | None,
        progress: Callable[[int, int], None] | None,
    ):
        self.campaign = campaign
        self.sheet = sheet
        self.dry_run = dry_run
        self.on_reject = on_reject
        self.progress = progress
        self.columns = list(campaign.column_map)
        self.mapping = map_columns(sheet.header, self.columns)
        self.report = ImportReport(columns=self.columns, header=sheet.header)
        for message in self.mapping.warnings:
            self.report.warn(None, message)
        self.region = campaign.phone_region
        self.phone_format = campaign.phone_format
        self.headers_length = sum(len(h) for h in self.columns)
        self.width = len(sheet.header)
        self.limits = ImportLimits.from_settings()
        self.seen: dict[str, int] = {}
        self.today = timezone.localdate()
        leads = _PostgresLeads if connection.vendor == "postgresql" else _SqlLeads
        self.lead_import_id = lead_import_id
        self.leads = leads(campaign.pk, lead_import_id, with_extra=campaign.update_existing_on_import)
        index = self.mapping.index
        self.extras = [(h, i) for h, i in index.items() if h not in _FIELD_OF and h != "PhoneNumber"]
        self.update_fields = [_FIELD_OF[h] for h in index if h in _FIELD_OF] + (["extra"] if self.extras else [])

    def run(self) -> ImportReport:
        chunk: list[_Row] = []
        lines_read = 0
        for line, cells in self.sheet.rows:
            lines_read += 1
            if len(cells) < self.width:
                cells = cells + [""] * (self.width - len(cells))
            cells, problem = row_problem(cells, self.sheet.header, self.limits)
            try:
                if problem:
                    self.report.rows += 1
                    raise _Rejected(problem)
                row = self._check(line, cells)
            except _Rejected as exc:
                self._reject(line, cells, str(exc))
                continue
            if row is None:
                continue
            chunk.append(row)
            if len(chunk) >= CHUNK_ROWS:
                self._flush(chunk, lines_read)
                chunk = []
        self._flush(chunk, lines_read)
        return self.report

    def _check(self, line: int, cells: list) -> _Row | None:
        index = self.mapping.index
        raw_phone = cells[index["PhoneNumber"]]
        if not (raw_phone.strip() if isinstance(raw_phone, str) else raw_phone):
            if not any(str(c).strip() for c in cells):
                return None  # a fully blank row is no row
            self.report.rows += 1
            raise _Rejected("PhoneNumber is empty")
        self.report.rows += 1
        try:
            phone = normalize_phone(raw_phone, self.region)
        except PhoneError as exc:
            raise _Rejected(str(exc)) from None
        sent = {"PhoneNumber": format_phone(phone, self.region, self.phone_format)}
        name = priority = expiry = None
        agent_id = skill = ""
        if "Name" in index:
            raw = cell_text(cells[index["Name"]])
            name, changed = clean_name(raw)
            if len(name) > 200:
                name, changed = name[:200].rstrip(), True
            if changed:
                self.report.warn(line, f"Name '{raw.strip()}' is sent as '{name}'")
            sent["Name"] = name
        if "Priority" in index:
            priority = _priority(cells[index["Priority"]])
            sent["Priority"] = "" if priority is None else str(priority)
        if "ExpiryDate" in index:
            expiry = _expiry(cells[index["ExpiryDate"]], self.today)
            sent["ExpiryDate"] = "" if expiry is None else expiry.isoformat()
        if "AgentId" in index:
            agent_id = sent["AgentId"] = _limited("AgentId", cell_text(cells[index["AgentId"]]).strip(), 100)
        if "skill" in index:
            skill = sent["skill"] = _limited("skill", cell_text(cells[index["skill"]]).strip(), 100)
        extra = {}
        for header, i in self.extras:
            extra[header] = sent[header] = cell_text(cells[i]).strip()
        length = self.headers_length + sum(map(len, sent.values()))
        if length > MAX_ROW_CHARS:
            raise _Rejected(f"row is {length} characters with its headers; CloudAgent allows at most {MAX_ROW_CHARS}")
        first = self.seen.setdefault(phone, line)
        if first != line:
            self._duplicate(line, phone, f"repeats line {first}")
            return None
        return _Row(line, (phone, name or "", priority, expiry, agent_id, skill, extra, line), sent)

    def _reject(self, line: int, cells: list, reason: str) -> None:
        report = self.report
        report.rejected += 1
        if len(report.rejected_rows) < PREVIEW_ROWS:
            report.rejected_rows.append((line, reason, [cell_text(c) for c in cells]))
        if self.on_reject:
            self.on_reject(line, cells, reason)

    def _duplicate(self, line: int, phone: str, reason: str) -> None:
        self.report.duplicates += 1
        if len(self.report.duplicate_rows) < PREVIEW_ROWS:
            self.report.duplicate_rows.append((line, phone, reason))

    def _listed(self, rows: list, listed: list) -> None:
        for row in rows[: PREVIEW_ROWS - len(listed)]:
            listed.append((row.line, [row.sent.get(h, "") for h in self.columns]))

    def _flush(self, chunk: list[_Row], lines_read: int) -> None:
        """Sort a chunk into new, updated and duplicate rows against the campaign, and write it unless dry."""
        update_existing = self.campaign.update_existing_on_import
        with nullcontext() if self.dry_run else transaction.atomic():
            existing = self.leads.existing([row.phone for row in chunk]) if chunk else {}
            new, updates, written_before = [], [], []
            for row in chunk:
                found = existing.get(row.phone)
                if found is None:
                    new.append(row)
                elif self.lead_import_id is not None and found[1] == self.lead_import_id:
                    written_before.append(row)  # by this import, before a crash stopped it: resuming
                elif update_existing and found[0] == LeadStatus.NEW:
                    updates.append((row, found[2]))
                elif update_existing:
                    self._duplicate(row.line, row.phone, f"already in the campaign as a {found[0]} lead; not updated")
                else:
                    self._duplicate(row.line, row.phone, "already in the campaign")
            if not self.dry_run:
                inserted = self.leads.insert([row.values for row in new]) if new else set()
                # A number another import added since the lookup (PostgreSQL only: SQLite's IMMEDIATE transaction
                # has held the write lock since the lookup) is a duplicate too.
                for row in new:
                    if row.phone not in inserted:
                        self._duplicate(row.line, row.phone, "already in the campaign")
                new = [row for row in new if row.phone in inserted]
                updated = self.leads.update(self.update_fields, updates) if updates else 0
                self.report.duplicates += len(updates) - updated
            else:
                updated = len(updates)
            self.report.imported += len(new) + len(written_before)
            self.report.updated += updated
            self._listed(new, self.report.new_rows)
            self._listed([row for row, _extra in updates], self.report.updated_rows)
            if self.progress:
                self.progress(lines_read, max(lines_read, self.sheet.rows_estimate))


def _columns(*names: str) -> list[str]:
    return [connection.ops.quote_name(Lead._meta.get_field(name).column) for name in names]


class _SqlLeads:
    """The campaign's leads as an import sees them, a chunk at a time: which numbers it has, and the writes, with
    multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING (SQLite 3.35+)."""

    BATCH = 500
    # Columns after the row's own: status, status_reason, source, lead_import, created_at, updated_at, campaign.
    FIXED = ("status", "status_reason", "source", "lead_import", "created_at", "updated_at", "campaign")

    def __init__(self, campaign_id: int, lead_import_id: int | None, *, with_extra: bool):
        self.campaign_id = campaign_id
        self.with_extra = with_extra
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        self.now = now
        self.fixed = (LeadStatus.NEW.value, "", Lead.Source.IMPORT.value, lead_import_id, now, now, campaign_id)
        self.table = connection.ops.quote_name(Lead._meta.db_table)
        self.conflict = ", ".join(_columns("campaign", "phone_number"))
        self.phone_column = _columns("phone_number")[0]

    def existing(self, phones: list[str]) -> dict[str, tuple[str, int | None, dict | None]]:
        """phone -> (status, the import that wrote it, extra if the campaign updates existing leads) for the numbers
        the campaign has."""
        fields = ("phone_number", "status", "lead_import", "extra")[: 4 if self.with_extra else 3]
        found = Lead.objects.filter(campaign_id=self.campaign_id, phone_number__in=phones).values_list(*fields)
        return {phone: (status, source, extra[0] if extra else None) for phone, status, source, *extra in found}

    def _adapt(self, values: tuple) -> tuple:
        phone, name, priority, expiry, agent_id, skill, extra, line = values
        ops = connection.ops
        extra = {k: v for k, v in extra.items() if v}
        return (phone, name, priority, ops.adapt_datefield_value(expiry), agent_id, skill,
                ops.adapt_json_value(extra, None), line)  # fmt: skip

    def insert(self, rows: list[tuple]) -> set[str]:
        columns = ", ".join(_columns(*_ROW_FIELDS, *self.FIXED))
        width = len(_ROW_FIELDS) + len(self.FIXED)
        inserted = set()
        with connection.cursor() as cursor:
            for start in range(0, len(rows), self.BATCH):
                batch = rows[start : start + self.BATCH]
                values = ", ".join(["(" + ", ".join(["%s"] * width) + ")"] * len(batch))
                params = [p for row in batch for p in (*self._adapt(row), *self.fixed)]
                cursor.execute(
                    f"INSERT INTO {self.table} ({columns}) VALUES {values} "
                    f"ON CONFLICT ({self.conflict}) DO NOTHING RETURNING {self.phone_column}",
                    params,
                )
                inserted.update(phone for (phone,) in cursor.fetchall())
        return inserted

    def update(self, fields: list[str], updates: list[tuple["_Row", dict]]) -> int:
        """The file's columns replace the lead's values; its extra columns are merged into the lead's extra. The
        status is checked in the same UPDATE, so a lead the push claimed meanwhile stays as it was."""
        position = {name: i for i, name in enumerate(_ROW_FIELDS)}
        sets = ", ".join(f"{column} = %s" for column in _columns(*fields, "updated_at"))
        where = " AND ".join(f"{column} = %s" for column in _columns("campaign", "phone_number", "status"))
        params = []
        for row, old_extra in updates:
            adapted = self._adapt(row.values)
            values = []
            for name in fields:
                if name == "extra":
                    merged = {k: v for k, v in {**(old_extra or {}), **row.values[position["extra"]]}.items() if v}
                    values.append(connection.ops.adapt_json_value(merged, None))
                else:
                    values.append(adapted[position[name]])
            params.append((*values, self.now, self.campaign_id, row.phone, LeadStatus.NEW.value))
        with connection.cursor() as cursor:
            cursor.executemany(f"UPDATE {self.table} SET {sets} WHERE {where}", params)
            return cursor.rowcount


class _PostgresLeads(_SqlLeads):
    """COPY into a TEMP table, then one INSERT ... SELECT ... ON CONFLICT DO NOTHING RETURNING: ~8x faster than
    row inserts into the indexed leads table (perf-notes.md, Import). Lookups bind the chunk's numbers as one
    array: an IN list of 5,000 parameters costs more to build and bind than to run."""

    TEMP = "leadhub_import_rows"

    def existing(self, phones: list[str]) -> dict[str, tuple[str, int | None, dict | None]]:
        columns = _columns("phone_number", "status", "lead_import", "extra")[: 4 if self.with_extra else 3]
        campaign, phone = _columns("campaign", "phone_number")
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {', '.join(columns)} FROM {self.table} WHERE {campaign} = %s AND {phone} = ANY(%s)",
                [self.campaign_id, phones],
            )
            # Django reads jsonb as text (its JSONField decodes); so does this raw query.
            return {
                phone: (status, source, json.loads(extra[0]) if extra else None)
                for phone, status, source, *extra in cursor
            }

    def insert(self, rows: list[tuple]) -> set[str]:
        columns = ", ".join(_columns(*_ROW_FIELDS))
        fixed = ", ".join(_columns(*self.FIXED))
        with connection.cursor() as cursor:
            # ON COMMIT DELETE ROWS empties it with each chunk's transaction; it lives as long as the connection.
            cursor.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {self.TEMP} ON COMMIT DELETE ROWS "
                f"AS SELECT {columns} FROM {self.table} WITH NO DATA"
            )
            with cursor.copy(f"COPY {self.TEMP} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(self._adapt(row))
            # Typed parameters: an untyped NULL or literal in a SELECT list would be read as text.
            typed = ", ".join(f"CAST(%s AS {Lead._meta.get_field(name).db_type(connection)})" for name in self.FIXED)
            cursor.execute(
                f"INSERT INTO {self.table} ({columns}, {fixed}) SELECT {columns}, {typed} FROM {self.TEMP} "
                f"ON CONFLICT ({self.conflict}) DO NOTHING RETURNING {self.phone_column}",
                self.fixed,
            )
            return {phone for (phone,) in cursor.fetchall()}


def import_sheet(
    *,
    campaign: Campaign,
    sheet: Sheet,
    dry_run: bool,
    lead_import_id: int | None = None,
    on_reject: Callable[[int, list, str], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Check and (unless dry_run) write every row of an opened sheet. `on_reject(line, cells, reason)` sees every
    rejected row; `progress(lines_read, lines_expected)` is called after each chunk, inside its transaction."""
    return _LeadFileImport(
        campaign=campaign,
        sheet=sheet,
        lead_import_id=lead_import_id,
        dry_run=dry_run,
        on_reject=on_reject,
        progress=progress,
    ).run()
