"""The import's row policy (README, Import policy): how a file's headers map to the campaign's columns, and what
each row must be to become a lead CloudAgent will take. CloudAgent's own limits come from cloudagent.rules, so the
preview refuses what the send-time check would."""

import re
from dataclasses import dataclass, field
from datetime import date, datetime

from django.utils import timezone

from campaigns.importing.readers import ImportFileError, cell_text
from campaigns.models import Campaign
from campaigns.normalize import PhoneError, clean_name, format_phone, normalize_phone
from cloudagent.rules import MAX_ROW_CHARS, PHONE_HEADERS, PRIORITY_RANGE, header_key

# Rows of each kind (new, updated, duplicate, rejected, warning) a report keeps to show; its counts are complete.
PREVIEW_ROWS = 1000

ALIASES = {
    "PhoneNumber": PHONE_HEADERS[1:],
    "Name": ("name", "full name", "customer name", "lead name"),
    "Priority": ("priority",),
    "ExpiryDate": ("expiry", "expiry date", "expires"),
    "AgentId": ("agent", "agent id"),
    "skill": ("skill",),
}
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
        try:
            if m := _ISO_DATE.fullmatch(text):
                day = date(int(m[1]), int(m[2]), int(m[3]))
            elif m := _DAY_FIRST.fullmatch(text):
                day = date(int(m[3]), int(m[2]), int(m[1]))
            else:
                raise ValueError
        except ValueError:
            raise Rejected(
                f"ExpiryDate '{text}' is not a date (YYYY-MM-DD, DD/MM/YYYY or DD-MM-YYYY, day first)"
            ) from None
    if day < today:
        raise Rejected(f"ExpiryDate {day.isoformat()} is in the past")
    return day


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


@dataclass
class Row:
    line: int
    values: tuple  # in ROW_FIELDS order
    sent: dict  # CloudAgent header -> text as sent

    @property
    def phone(self) -> str:
        return self.values[0]


class RowPolicy:
    """The policy for one campaign and one file's header: `check` turns a row's cells into a Row, raises Rejected,
    or returns None for a blank row or a repeat of an earlier line (recorded on the report as a duplicate)."""

    def __init__(self, *, campaign: Campaign, header: list[str], report: ImportReport):
        self.columns = list(campaign.column_map)
        self.mapping = map_columns(header, self.columns)
        self.report = report
        for message in self.mapping.warnings:
            report.warn(None, message)
        self.region = campaign.phone_region
        self.phone_format = campaign.phone_format
        self.headers_length = sum(len(h) for h in self.columns)
        self.seen: dict[str, int] = {}
        self.today = timezone.localdate()
        index = self.mapping.index
        self.extras = [(h, i) for h, i in index.items() if h not in FIELD_OF and h != "PhoneNumber"]
        self.update_fields = [FIELD_OF[h] for h in index if h in FIELD_OF] + (["extra"] if self.extras else [])

    def check(self, line: int, cells: list) -> Row | None:
        index = self.mapping.index
        raw_phone = cells[index["PhoneNumber"]]
        if not (raw_phone.strip() if isinstance(raw_phone, str) else raw_phone):
            if not any(str(c).strip() for c in cells):
                return None  # a fully blank row is no row
            self.report.rows += 1
            raise Rejected("PhoneNumber is empty")
        self.report.rows += 1
        try:
            phone = normalize_phone(raw_phone, self.region)
        except PhoneError as exc:
            raise Rejected(str(exc)) from None
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
            raise Rejected(f"row is {length} characters with its headers; CloudAgent allows at most {MAX_ROW_CHARS}")
        first = self.seen.setdefault(phone, line)
        if first != line:
            self.report.duplicate(line, phone, f"repeats line {first}")
            return None
        return Row(line, (phone, name or "", priority, expiry, agent_id, skill, extra, line), sent)
