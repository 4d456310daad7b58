"""The import's row policy (README, Import policy): what each row must be to become a lead CloudAgent will take,
once its columns are mapped (campaigns.importing.columns). CloudAgent's own limits come from cloudagent.rules, so the
preview refuses what the send-time check would."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache

from django.utils import timezone

from campaigns.importing.guard import ImportLimits, row_problem
from campaigns.importing.phones import phone_normalizer
from campaigns.importing.readers import cell_text
from campaigns.models import Campaign
from campaigns.normalize import PhoneError, clean_name, format_phone
from cloudagent.rules import MAX_ROW_CHARS, PRIORITY_RANGE

# Rows of each kind (new, updated, duplicate, rejected, warning) a report keeps to show; its counts are complete.
PREVIEW_ROWS = 1000

_DAY_FIRST = re.compile(r"(\d{1,2})[/-](\d{1,2})[/-](\d{4})")
_ISO_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_WHOLE_NUMBER = re.compile(r"\d+(?:\.0*)?")

# Lead columns the engine writes, in the order of the row tuples it builds.
ROW_FIELDS = ("phone_number", "name", "priority", "expiry_date", "agent_id", "skill", "extra", "source_line")
# Standard CloudAgent header -> Lead field.
FIELD_OF = {
    "Name": "name",
    "Priority": "priority",
    "ExpiryDate": "expiry_date",
    "AgentId": "agent_id",
    "skill": "skill",
}


# ---------------------------------------------------------------------------------------------------- rows


class Rejected(Exception):
    """The row breaks the policy; the message is the reason the operator sees."""


def _priority(value: object) -> int | None:
    text = cell_text(value).strip()
    if not text:
        return None
    if _WHOLE_NUMBER.fullmatch(text):
        number = int(text.split(".", 1)[0])
        if number in PRIORITY_RANGE:
            return number
    raise Rejected(f"Priority '{text}' is not a whole number from 1 to 99")


def _expiry(value: object, today: date) -> date | None:
    if isinstance(value, datetime):
        day = value.date()
    elif isinstance(value, date):
        day = value
    else:
        text = value.strip()
        if not text:
            return None
        day = _day(text)
        if day is None:
            raise Rejected(f"ExpiryDate '{text}' is not a date (YYYY-MM-DD, DD/MM/YYYY or DD-MM-YYYY, day first)")
    if day < today:
        raise Rejected(f"ExpiryDate {day.isoformat()} is in the past")
    return day


@lru_cache(maxsize=4096)
def _day(text: str) -> date | None:
    """A file's expiry dates are a handful of distinct texts, repeated on every row: each is parsed once."""
    try:
        if m := _ISO_DATE.fullmatch(text):
            return date(int(m[1]), int(m[2]), int(m[3]))
        if m := _DAY_FIRST.fullmatch(text):
            return date(int(m[3]), int(m[2]), int(m[1]))
    except ValueError:
        pass
    return None


def _limited(header: str, value: str, limit: int) -> str:
    if len(value) > limit:
        raise Rejected(f"{header} is longer than {limit} characters")
    return value


@dataclass
class ImportReport:
    """What an import did, or would do (a dry run): complete counts, and the first PREVIEW_ROWS rows of each kind.

    new_rows and updated_rows hold (line, values as CloudAgent will get them, in `columns` order); duplicate_rows
    (line, phone, reason); rejected_rows (line, reason, cells); warning_list (line or None, message)."""

    columns: list[str]
    header: list[str] = field(default_factory=list)
    # The export recognised (a source profile's label), and (header, field, why) for every column of the file.
    profile: str = ""
    mapped: list = field(default_factory=list)
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

    def duplicate(self, line: int, phone: str, reason: str) -> None:
        self.duplicates += 1
        if len(self.duplicate_rows) < PREVIEW_ROWS:
            self.duplicate_rows.append((line, phone, reason))

    def counts(self) -> dict:
        return {
            "rows": self.rows,
            "imported": self.imported,
            "updated": self.updated,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "warnings": self.warnings,
        }


# An accepted row: (line, values in ROW_FIELDS order, the text CloudAgent gets in the campaign's column order).
# A plain tuple of plain values (dates as ISO text, extra fields as JSON text): rows cross a pipe from the child
# process that checks them, and tuples of strings pickle ~10x faster than objects. The phone is values[0].
Row = tuple[int, tuple, tuple]


@dataclass
class Checked:
    """One batch of lines through the policy: what a child process sends back (so: plain, picklable data)."""

    lines: int
    rows: int
    accepted: list[Row]
    rejected: list[tuple[int, list, str]]
    warnings: list[tuple[int | None, str]]
    warning_count: int


class RowPolicy:
    """The policy for one campaign and one file's column mapping (campaigns.importing.columns): `index` is field
    -> position, `kept` the (header, position) of the columns kept as extra fields, `width` the header's length.
    `check` turns a row's cells into a Row, raises Rejected, or returns None for a blank row. Repeats of an earlier
    line are the writers' to find (in the database, so memory stays flat)."""

    def __init__(
        self,
        *,
        campaign: Campaign,
        index: dict[str, int],
        kept: list[tuple[str, int]],
        width: int,
        header: list[str] | None = None,
    ):
        self.columns = list(campaign.column_map)
        self.width = width
        self.header = header or []  # names the column of a refused cell
        self.limits = ImportLimits.from_settings()
        self.index = index
        self.region = campaign.phone_region
        self.normalize_phone = phone_normalizer(self.region).normalize
        self.phone_format = campaign.phone_format
        self.headers_length = sum(len(h) for h in self.columns)
        self.today = timezone.localdate()
        # The campaign's other map columns: sent to CloudAgent and kept on the lead; the columns the operator keeps
        # as extra fields: kept on the lead only.
        self.extras = [(h, i) for h, i in index.items() if h not in FIELD_OF and h != "PhoneNumber"]
        self.kept = kept
        stored_extra = ["extra"] if self.extras or self.kept else []
        self.update_fields = [FIELD_OF[h] for h in index if h in FIELD_OF] + stored_extra
        self.report = ImportReport(columns=self.columns)

    def checked(self, batch: list[tuple[int, list]]) -> Checked:
        """The policy over a batch of lines. Warnings go to a report of the batch's own: in a child process the
        import's report would be a copy nobody reads."""
        report = self.report = ImportReport(columns=self.columns)
        accepted, rejected = [], []
        for line, cells in batch:
            if len(cells) < self.width:
                cells = cells + [""] * (self.width - len(cells))
            # The same cells and verdict in the preview and the import: a NUL byte once passed the dry run and
            # failed the real import on PostgreSQL.
            cells, problem = row_problem(cells, self.header, self.limits)
            try:
                if problem:
                    report.rows += 1
                    raise Rejected(problem)
                row = self.check(line, cells)
            except Rejected as exc:
                rejected.append((line, cells, str(exc)))
                continue
            if row is not None:
                accepted.append(row)
        return Checked(len(batch), report.rows, accepted, rejected, report.warning_list, report.warnings)

    def check(self, line: int, cells: list) -> Row | None:
        index = self.index
        raw_phone = cells[index["PhoneNumber"]]
        if not (raw_phone.strip() if isinstance(raw_phone, str) else raw_phone):
            if not any(str(c).strip() for c in cells):
                return None  # a fully blank row is no row
            self.report.rows += 1
            raise Rejected("PhoneNumber is empty")
        self.report.rows += 1
        try:
            phone = self.normalize_phone(raw_phone)
        except PhoneError as exc:
            raise Rejected(str(exc)) from None
        sent = {"PhoneNumber": format_phone(phone, self.region, self.phone_format)}
        name = priority = None
        expiry = agent_id = skill = ""
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
            day = _expiry(cells[index["ExpiryDate"]], self.today)
            expiry = sent["ExpiryDate"] = "" if day is None else day.isoformat()
        if "AgentId" in index:
            agent_id = sent["AgentId"] = _limited("AgentId", cell_text(cells[index["AgentId"]]).strip(), 100)
        if "skill" in index:
            skill = sent["skill"] = _limited("skill", cell_text(cells[index["skill"]]).strip(), 100)
        extra = {}
        for header, i in self.extras:
            extra[header] = sent[header] = cell_text(cells[i]).strip()
        for header, i in self.kept:
            extra[header] = cell_text(cells[i]).strip()
        length = self.headers_length + sum(map(len, sent.values()))
        if length > MAX_ROW_CHARS:
            raise Rejected(f"row is {length} characters with its headers; CloudAgent allows at most {MAX_ROW_CHARS}")
        values = (phone, name or "", priority, expiry or None, agent_id, skill, _extra_json(extra), line)
        return line, values, tuple(sent.get(h, "") for h in self.columns)


def _extra_json(extra: dict) -> str:
    """Extra fields as stored: the empty ones left out."""
    kept = {k: v for k, v in extra.items() if v}
    return json.dumps(kept, ensure_ascii=False) if kept else "{}"
