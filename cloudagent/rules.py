"""CloudAgent's rules for a bulk upload, in one place so the import preview and the send-time check cannot drift:
the limits, the Name alphabet, the row length, Priority and ExpiryDate, the header aliases people use for the
phone column, and how a delimited file's delimiter is told. See docs/cloudagent-contract.md, "Limits".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

MAX_ROWS_PER_REQUEST = 500  # docs/cloudagent-contract.md, Limits
MAX_ROW_CHARS = 2000  # docs/cloudagent-contract.md, Limits: "2000 characters per row including all headers"

# docs/cloudagent-contract.md, Limits: Name may contain only letters, digits, _, space and ( ) . + $ % - :
# CloudAgent's check is not published; we read "letters" and "digits" as ASCII, the strict reading (the import
# folds names to ASCII for the same reason).
NAME_REFUSED = re.compile(r"[^A-Za-z0-9_ ().+$%\-:]")
# A name already in that alphabet, single-spaced and trimmed: nothing to clean.
NAME_ACCEPTED = re.compile(r"[A-Za-z0-9_().+$%\-:]+(?: [A-Za-z0-9_().+$%\-:]+)*")
PRIORITY_RANGE = range(1, 100)  # docs/cloudagent-contract.md, Limits: 1-99, documented on the single-lead API
# docs/cloudagent-contract.md, Limits: YYYY-MM-DD; an older sibling API also shows YYYY-MM-DD HH:MM:SS.
EXPIRY_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}( \d{2}:\d{2}:\d{2})?")

# The headers people give the phone column, in lead files and in CloudAgent's failed-rows file alike; compared
# by `header_key`.
PHONE_HEADERS = (
    "PhoneNumber",
    "phone",
    "phone number",
    "phone no",
    "mobile",
    "mobile number",
    "mobile no",
    "contact",
    "contact number",
    "contact no",
    "customer number",
    "msisdn",
    "number",
)
DELIMITERS = ",;\t|"
_HEADER_NOISE = re.compile(r"[\s_.\-]+")


def header_key(header: object) -> str:
    """A header as compared: case, spaces, underscores, dots and hyphens dropped ("Mobile No." is "mobileno")."""
    return _HEADER_NOISE.sub("", str(header)).lower()


SNIFF_RECORDS = 50  # records of a sample compared for a consistent delimiter count


def header_line_delimiter(line: str) -> str:
    """The delimiter a header line uses most (comma when it has none): Excel in some locales writes ";", and a
    later column full of commas (a reason) must not outvote the header."""
    counts = {d: line.count(d) for d in DELIMITERS}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def sniff_delimiter(sample: str) -> str:
    """Comma, semicolon, tab or pipe, in time linear in the sample (csv.Sniffer took 45 s on 64 KB of `,"`).
    Each candidate is counted outside double quotes in the first SNIFF_RECORDS records; the one whose count in
    the header is non-zero and repeated by most records wins, then the one the header has most of."""
    records: list[dict[str, int]] = []
    counts = dict.fromkeys(DELIMITERS, 0)
    quoted = False
    for char in sample:
        if char == '"':
            quoted = not quoted
        elif quoted:
            continue
        elif char == "\n":
            records.append(counts)
            counts = dict.fromkeys(DELIMITERS, 0)
            if len(records) >= SNIFF_RECORDS:
                break
        elif char in counts:
            counts[char] += 1
    if not records:
        records.append(counts)
    header = records[0]
    best, best_score = ",", (0.0, 0)
    for delimiter in DELIMITERS:
        if not header[delimiter]:
            continue
        agreeing = sum(1 for record in records if record[delimiter] == header[delimiter]) / len(records)
        score = (agreeing, header[delimiter])
        if score > best_score:
            best, best_score = delimiter, score
    return best


def check_batch(column_map: Sequence[str], rows: Sequence[Sequence]) -> None:
    """What CloudAgent would refuse or fail later about a request as a whole; ValueError names it."""
    check_map(column_map)
    if len(rows) > MAX_ROWS_PER_REQUEST:
        raise ValueError(f"{len(rows)} rows in one request; CloudAgent takes at most {MAX_ROWS_PER_REQUEST}")
    width = len(column_map)
    for index, row in enumerate(rows):
        if len(row) != width:
            raise ValueError(f"row {index} has {len(row)} values for a map of {width} headers")


def check_map(column_map: Sequence[str]) -> None:
    # docs/cloudagent-contract.md, Request: a map without PhoneNumber is *accepted* and then fails whole in the
    # callback, so refuse it before it costs a rate-limit slot.
    if isinstance(column_map, str):
        raise ValueError("column_map is a sequence of header names, not a string")
    if "PhoneNumber" not in column_map:
        raise ValueError(f"column_map must contain PhoneNumber, got {list(column_map)!r}")
    if len(set(column_map)) != len(column_map):
        raise ValueError(f"column_map names a header twice: {list(column_map)!r}")


def name_refused_characters(text: str) -> list[str]:
    """The characters of a Name CloudAgent refuses, each once, in order."""
    return list(dict.fromkeys(NAME_REFUSED.findall(text)))


@dataclass(frozen=True)
class RowRejection:
    key: object
    reason: str


@dataclass
class BuiltRows:
    """Rows ready for `add_bulk_data`, in the campaign's column order; `keys[i]` is the caller's key of
    `rows[i]` (a lead id), so the batch can be tied back to its leads."""

    keys: list = field(default_factory=list)
    rows: list[list] = field(default_factory=list)
    rejected: list[RowRejection] = field(default_factory=list)


def build_rows(column_map: Sequence[str], records: Iterable[tuple[object, Mapping[str, object]]]) -> BuiltRows:
    """Row building before any request is spent: map each record's values into the campaign's column order
    (a column the record lacks -> ""), Priority as a JSON number (int; empty -> ""), dates/datetimes as
    YYYY-MM-DD, everything else as str (None -> "").

    Local checks mirror the documented limits (docs/cloudagent-contract.md, Limits), because CloudAgent would otherwise
    accept the batch and drop the row later, or fail the whole upload: PhoneNumber present and non-empty;
    Name only letters, digits, _, space and ( ) . + $ % - :; Priority a whole number 1-99; ExpiryDate, when
    given as text, YYYY-MM-DD (or YYYY-MM-DD HH:MM:SS); the row at most MAX_ROW_CHARS long (see
    `row_length`). A record that fails goes to `.rejected` with every reason it fails, never to `.rows`.

    A datetime's own date is used as it stands: the client does not know the caller's time zone.
    """
    check_map(column_map)
    built = BuiltRows()
    for key, record in records:
        row: list = []
        problems: list[str] = []
        for header in column_map:
            value, problem = _cell(header, record.get(header))
            row.append(value)
            if problem:
                problems.append(problem)
        length = row_length(column_map, row)
        if length > MAX_ROW_CHARS:
            problems.append(f"row is {length} characters with its headers; CloudAgent allows at most {MAX_ROW_CHARS}")
        if problems:
            built.rejected.append(RowRejection(key=key, reason="; ".join(problems)))
        else:
            built.keys.append(key)
            built.rows.append(row)
    return built


def row_length(column_map: Sequence[str], row: Sequence) -> int:
    """The documented limit is "2000 characters per row including all headers" (docs/cloudagent-contract.md, Limits).

    We read it as the sum, over the row's columns, of the header's length plus the length of the cell's text
    (`str(value)`, None as ""): what a person counts when they picture each cell with its header. JSON quotes,
    commas and escapes are not counted; they are the transport's, not the row's. A priority of 5 counts 1.
    """
    return sum(
        len(header) + len("" if value is None else str(value)) for header, value in zip(column_map, row, strict=True)
    )


def _cell(header: str, value: object) -> tuple[object, str | None]:
    """The value as sent for this header, and the reason it is refused (or None)."""
    if header == "Priority":
        return _priority(value)
    if isinstance(value, datetime):
        text = value.strftime("%Y-%m-%d")
    elif isinstance(value, date):
        text = value.isoformat()
    else:
        text = "" if value is None else str(value)
    if header == "PhoneNumber" and not text.strip():
        return text, "PhoneNumber is empty"
    if header == "Name":
        refused = name_refused_characters(text)
        if refused:
            shown = " ".join(repr(char) for char in refused)
            return text, f"Name contains characters CloudAgent refuses: {shown}"
    if header == "ExpiryDate" and text.strip() and not isinstance(value, date):
        if not is_expiry_text(text.strip()):
            return text, f"ExpiryDate {text!r} is not a date as YYYY-MM-DD"
    return text, None


def _priority(value: object) -> tuple[object, str | None]:
    """CloudAgent's documented example sends Priority as a JSON number; "supports only numeric value" is one
    of its per-lead reasons (docs/cloudagent-contract.md, Related provider facts)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return "", None
    number: Decimal | None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int | Decimal):
        number = Decimal(value)
    elif isinstance(value, float | str):
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            number = None
    else:
        number = None
    if number is None or not number.is_finite() or number != number.to_integral_value():
        return str(value), f"Priority {value!r} is not a whole number"
    priority = int(number)
    if priority not in PRIORITY_RANGE:
        return priority, f"Priority {priority} is outside 1-99"
    return priority, None


def is_expiry_text(text: str) -> bool:
    if not EXPIRY_TEXT.fullmatch(text):
        return False
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True
