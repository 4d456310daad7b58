"""What goes over the wire: request parsing, the documented answers and reasons, the upload callback's shapes and
the call summary posted to a "URL to Push" (docs/cloudagent-contract.md, docs/cloudagent-call-summary.md)."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from email import policy
from email.parser import BytesParser
from urllib.parse import parse_qs, urlencode

API_PATH = "/cloudAgentRestAPI/index.php/AddCampaignBulkDataV4/addBulkData/format/json"
REDACTED = "[redacted]"
# Asia/Kolkata has been UTC+05:30 without DST since 1945: a fixed offset needs no tzdata on the host.
KOLKATA = timezone(timedelta(hours=5, minutes=30), "IST")
PROVIDER_TIME = "%Y-%m-%d %H:%M:%S"  # callback startDateTime / endDateTime, call summary StartTime / EndTime

# Synchronous answers: the documented bodies, checked in this order.
API_KEY_EMPTY = {"status": "error", "message": "apiKey should not be empty"}
USER_NAME_EMPTY = {"status": "error", "message": "userName should not be empty"}
INVALID_CREDENTIALS = {"status": "error", "message": "Invalid userName or apiKey"}
CAMPAIGN_NAME_EMPTY = {"status": "error", "message": "campaignName should not be empty"}
INVALID_CAMPAIGN = {"status": "error", "message": "Invalid Campaign Name"}
INVALID_DATA = {"status": "failure", "message": "Please provide valid data"}
RATE_LIMITED = {"status": "error", "message": "too many Requests and failed to add Data to queue"}
# Not documented: the page only says "maximum 500 per request". More rows than that is not valid data.
TOO_MANY_ROWS = INVALID_DATA

# The asynchronous result, and related provider facts: documented statuses, messages and reasons.
UPLOADED = ("Success", "File Successfully uploaded.")
UPLOAD_FAILED = ("Fail", "File Failed to Upload.")
REASON_PHONE_EMPTY = "Phone Number is Empty!"
REASON_DND = "PhoneNumber Added is a DND Number"
REASON_DUPLICATE = "Number Already Exist"
REASON_PRIORITY = "Priority, supports only numeric value or the value is not passed properly"
# Not documented; worded like the documented ones.
REASON_PHONE_INVALID = "Invalid Phone Number"
REASON_NAME = "Name contains invalid characters"
REASON_ROW_TOO_LONG = "Row exceeds the maximum characters allowed"

PHONE = re.compile(r"\+?\d{10,13}")
# Limits: letters, digits, _, space and ( ) . + $ % - :   read strictly: ASCII letters only.
NAME = re.compile(r"[A-Za-z0-9_ ().+$%\-:]*")
PRIORITY = re.compile(r"\d{1,2}")

SERVER_ERROR_PAGE = (
    b"<html><head><title>500 Internal Server Error</title></head><body><h1>Internal Server Error</h1></body></html>"
)
NOT_JSON_PAGE = (
    b"<html><head><title>CloudAgent</title></head>"
    b"<body><h1>Service temporarily unavailable</h1><p>Please try again later.</p></body></html>"
)

# Call outcomes a setting can weigh, each as (DialStatus, CustomerStatus). The names are the documented status
# values; which DialStatus goes with a CustomerStatus is our reading (the docs list the two sets separately).
# "SubcriberAbsent" is the provider's spelling.
CALL_OUTCOMES = {
    "answered": ("answered", "answered"),
    "not_answered": ("not_answered", "not_answered"),
    "Busy": ("not_answered", "Busy"),
    "Congestion": ("not_answered", "Congestion"),
    "NoResponse": ("not_answered", "NoResponse"),
    "SubcriberAbsent": ("not_answered", "SubcriberAbsent"),
    "invalid_number": ("invalid_number", "InvalidNumber"),
    "exception": ("exception", "exception"),
}


def parse_fields(content_type: str, body: bytes) -> dict[str, object]:
    """The request's fields from a form-urlencoded, multipart or JSON body (the contract's Request: all three).

    Like PHP's $_POST, a repeated field keeps its last value and a body of any other type carries no fields
    (so the answer is "apiKey should not be empty"). In JSON, bulkData may be an object or a JSON string, and a
    boolean counts as "true"/"false"."""
    media = content_type.split(";")[0].strip().lower()
    if media == "application/x-www-form-urlencoded":
        pairs = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        return {name: values[-1] for name, values in pairs.items()}
    if media == "multipart/form-data":
        head = b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n"
        message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
        parts = message.iter_parts() if message.is_multipart() else ()
        found = {}
        for part in parts:
            name, payload = part.get_param("name", header="content-disposition"), part.get_payload(decode=True)
            if name and isinstance(payload, bytes):
                found[name] = payload.decode("utf-8", "replace")
        return found
    if media == "application/json":
        try:
            document = json.loads(body)
        except ValueError:
            return {}
        if not isinstance(document, dict):
            return {}
        return {
            name: value if name == "bulkData" else as_text(value)
            for name, value in document.items()
            if value is not None
        }
    return {}


def parse_bulk_data(raw: object) -> tuple[list[str], list[list]] | None:
    """(map, rows), or None when bulkData is missing, empty or not {"map": [...], "data": [[...], ...]}: the
    "Please provide valid data" answer. A map without PhoneNumber, or rows that do not fit the map, pass here:
    the contract says they are accepted and fail later, in the callback."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    if not isinstance(raw, dict):
        return None
    column_map, rows = raw.get("map"), raw.get("data")
    if not (isinstance(column_map, list) and column_map and all(isinstance(name, str) for name in column_map)):
        return None
    if not (isinstance(rows, list) and rows and all(isinstance(row, list) for row in rows)):
        return None
    if not all(cell is None or isinstance(cell, str | int | float) for row in rows for cell in row):
        return None
    return column_map, rows


def as_text(value: object) -> str:
    """A cell or field as the provider's PHP would read it: JSON null is empty, booleans are true/false."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def as_flag(value: object) -> bool:
    return as_text(value).strip().lower() == "true"


def national_digits(phone: str) -> str:
    return re.sub(r"\D", "", phone)[-10:]


def now_text() -> str:
    return datetime.now(KOLKATA).isoformat(timespec="milliseconds")


def provider_time(moment: datetime) -> str:
    return moment.astimezone(KOLKATA).strftime(PROVIDER_TIME)


def hms(seconds: int) -> str:
    """A duration as the call summary writes it: HH:MM:SS."""
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def callback_body(data: dict, shape: str) -> tuple[str, str]:
    """(content type, body) of an upload callback (the contract: receivers must accept a JSON object, a JSON
    string and a form field data=<json>). "json-string-unescaped" is the page's own sample byte for byte: a JSON
    object pasted inside quotes without escaping, which is not valid JSON."""
    text = json.dumps(data)
    if shape == "json-object":
        return "application/json", json.dumps({"data": data})
    if shape == "json-string":
        return "application/json", json.dumps({"data": text})
    if shape == "json-string-unescaped":
        return "application/json", '{"data":"' + json.dumps(data, separators=(",", ":")) + '"}'
    return "application/x-www-form-urlencoded", urlencode({"data": text})


def call_summary_body(summary: dict) -> tuple[str, str]:
    """(content type, body) of a call summary: a form whose one field `data` holds the JSON object, as public
    receivers of CloudAgent's "URL to Push" read it."""
    return "application/x-www-form-urlencoded", urlencode({"data": json.dumps(summary)})
