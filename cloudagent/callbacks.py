"""CloudAgent's callback body (docs/cloudagent-contract.md, "The asynchronous result"), read defensively.

Nothing about the body is firm: its content type is undocumented, the provider's own sample double-encodes the
data object, every value arrives as a string, maybe padded. This module only reads; storing and applying a
callback is the project's business.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

from django.core.exceptions import SuspiciousOperation
from django.core.files.uploadhandler import MemoryFileUploadHandler
from django.http.multipartparser import MultiPartParser, MultiPartParserError

from cloudagent.errors import CallbackInvalid
from cloudagent.json_text import finite_float, json_depth, refuse_constant
from cloudagent.times import provider_datetime

# CloudAgent's timestamps carry no zone; its servers keep Indian time.
PROVIDER_TIME_ZONE = "Asia/Kolkata"
SUCCESS, FAIL = "Success", "Fail"
_STATUS_WORDS = {"success": SUCCESS, "fail": FAIL, "failed": FAIL, "failure": FAIL}
_TRANSACTION_ID = re.compile(r"[0-9A-Za-z_-]{1,40}")  # docs/cloudagent-contract.md: 24-25 digits; the column holds 40
_COUNT = re.compile(r"\d{1,9}(?:\.0*)?")  # counts come as strings, sometimes "6.0"
# The provider's own sample nests an unescaped JSON object in a string: {"data":"{"totalNoUploaded":"6",...}"}.
_UNESCAPED_DATA_STRING = re.compile(r'\{\s*"data"\s*:\s*"(\{.*\})"\s*\}', re.DOTALL)
# A callback's data object is flat; these bound what parsing a hostile body can cost.
MAX_NESTING = 32
MAX_UNWRAPPING = 2


@dataclass(frozen=True)
class CallbackData:
    """The `data` object of a callback, read defensively: every value arrives as a string, maybe padded."""

    transaction_id: str
    status: str
    message: str
    total_uploaded: int | None
    numbers_processed: int | None
    numbers_not_processed: int | None
    failed_file_path: str
    started_at: datetime | None
    finished_at: datetime | None
    raw: dict


def callback_body_parse(*, body: str, content_type: str, time_zone: str = PROVIDER_TIME_ZONE) -> CallbackData:
    """Read any of the three documented shapes: JSON {"data": {...}}, JSON {"data": "<json>"} and a form field
    data=<json> (url-encoded or multipart). The shape is told from the body, since the content type is not
    documented; unknown extra fields are kept in `raw` and otherwise ignored."""
    data = _sanitised(_data_object(body, content_type))
    transaction_id = provider_text(data.get("transactionId"))
    if not transaction_id:
        raise CallbackInvalid('"data" has no transactionId')
    if not _TRANSACTION_ID.fullmatch(transaction_id):
        raise CallbackInvalid(f"transactionId {transaction_id[:60]!r} is not a CloudAgent transactionId")
    status_text = provider_text(data.get("status"))
    status = _STATUS_WORDS.get(status_text.lower())
    if status is None:
        raise CallbackInvalid(f'status {status_text[:60]!r} is neither "Success" nor "Fail"')
    return CallbackData(
        transaction_id=transaction_id,
        status=status,
        message=provider_text(data.get("message"))[:400],
        total_uploaded=_count(data.get("totalNoUploaded")),
        numbers_processed=_count(data.get("numbersProcessed")),
        numbers_not_processed=_count(data.get("numbersNotProcessed")),
        failed_file_path=provider_text(data.get("failedFilePath")),
        started_at=_provider_time(data.get("startDateTime"), time_zone),
        finished_at=_provider_time(data.get("endDateTime"), time_zone),
        raw=data,
    )


def _data_object(body: str, content_type: str) -> dict:
    text = body.strip()
    if not text:
        raise CallbackInvalid("the body is empty")
    if content_type.split(";")[0].strip().lower() == "multipart/form-data":
        field = _multipart_field(body, content_type)
    elif text[0] in '{["':
        document = _json(text, what="the body")
        if isinstance(document, dict) and "data" in document:
            field = document["data"]
        elif isinstance(document, dict) and "transactionId" in document:
            field = document  # the data object without its envelope: undocumented, harmless to accept
        else:
            raise CallbackInvalid('the JSON body has no "data" object')
    else:
        values = parse_qs(text, keep_blank_values=True).get("data")
        if not values:
            raise CallbackInvalid("expected JSON or a form field data=<json>, found neither")
        field = values[0]
    if isinstance(field, str):
        field = _json(field.strip(), what='"data"')
    if not isinstance(field, dict):
        raise CallbackInvalid('"data" is not a JSON object')
    return field


def _json(text: str, *, what: str, unwrapped: int = 0):
    """json.loads, refusing nesting deeper than MAX_NESTING first (a body nested ~1,000 deep raised
    RecursionError, left the event `received` and broke the sweep on every tick), and unwrapping the provider's
    string-in-a-string shapes at most MAX_UNWRAPPING times."""
    if unwrapped > MAX_UNWRAPPING:
        raise CallbackInvalid(f"{what} nests JSON inside strings more than {MAX_UNWRAPPING} times")
    if json_depth(text) > MAX_NESTING:
        raise CallbackInvalid(f"{what} nests deeper than {MAX_NESTING} levels")
    try:
        document = json.loads(text, parse_constant=refuse_constant, parse_float=finite_float)
    except (ValueError, RecursionError) as exc:
        quirk = _UNESCAPED_DATA_STRING.fullmatch(text)
        if quirk is None:
            raise CallbackInvalid(f"{what} is not valid JSON: {str(exc)[:200]}") from None
        return {"data": _json(quirk.group(1), what='"data"', unwrapped=unwrapped + 1)}
    if isinstance(document, str) and document.lstrip().startswith("{"):
        return _json(document, what=what, unwrapped=unwrapped + 1)  # a whole body sent as one JSON string
    return document


def _multipart_field(body: str, content_type: str) -> str:
    raw = body.encode()
    meta = {"CONTENT_TYPE": content_type, "CONTENT_LENGTH": len(raw)}
    try:
        fields, files = MultiPartParser(meta, io.BytesIO(raw), [MemoryFileUploadHandler()]).parse()
        if "data" in fields:
            return fields["data"]
        if "data" in files:
            return files["data"].read().decode("utf-8")
    except (MultiPartParserError, SuspiciousOperation, UnicodeDecodeError, ValueError) as exc:
        raise CallbackInvalid(f"the multipart body cannot be read: {str(exc)[:200]}") from exc
    raise CallbackInvalid('the form has no "data" field')


def provider_text(value) -> str:
    if value is None:
        return ""
    return _clean_str(value if isinstance(value, str) else str(value)).strip()


def _clean_str(text: str) -> str:
    """NUL and lone surrogates are valid in JSON but not in PostgreSQL text or jsonb."""
    text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def _sanitised(value):
    if isinstance(value, str):
        return _clean_str(value)
    if isinstance(value, dict):
        return {_clean_str(str(k)): _sanitised(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_sanitised(v) for v in value]
    return value


def _count(value) -> int | None:
    """A count as CloudAgent writes it ("6", " 6 ", 6, "6.0"); None when missing or not a count."""
    text = provider_text(value)
    if not _COUNT.fullmatch(text):
        return None
    return int(text.split(".")[0])


def _provider_time(value, time_zone: str) -> datetime | None:
    """CloudAgent's timestamps carry no zone; its servers keep Indian time (CLOUDAGENT_TIME_ZONE)."""
    moment = provider_datetime(provider_text(value))
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=ZoneInfo(time_zone))
