"""CloudAgent's per-call summaries ("URL to Push", docs/cloudagent-call-summary.md): read one POSTed body into a
typed `CallSummary`, or refuse it with `MalformedCallSummary`.

Pure standard library, no Django, no RQ, no project import: the webhook, the emulator's tests and a shell read a
body the same way. The body is hostile until proven otherwise — CloudAgent signs nothing and the URL is the only
credential — so every failure is a `MalformedCallSummary` with a message fit to send back in a 400, never a
RecursionError, a UnicodeError or a KeyError. Every post carries the account's API key in plain text (`Apikey`):
`CallSummary.data` never holds it, and `call_summary_body_redact` gives the raw body to store without it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.errors import MessageError
from email.parser import BytesParser
from urllib.parse import parse_qsl, quote_plus, unquote_plus, urlsplit

from cloudagent.json_text import finite_float, json_depth, refuse_constant
from cloudagent.times import provider_datetime

# docs/cloudagent-call-summary.md, "Dial and customer statuses": the values CloudAgent documents. Others are
# kept as sent; a documented value sent in another case is given the documented spelling.
DIAL_STATUSES = ("answered", "not_answered", "ring", "invalid_number", "exception")
CUSTOMER_STATUSES = (
    "answered",
    "not_answered",
    "Busy",
    "Congestion",
    "InvalidNumber",
    "NoResponse",
    "SubcriberAbsent",  # sic: CloudAgent's spelling
)

DEFAULT_MAX_BYTES = 64 * 1024  # a real summary is under 2 KB; the webhook may pass its own cap
MAX_JSON_DEPTH = 16  # a summary is a flat object, at most inside a {"data": ...} envelope
MAX_FORM_FIELDS = 200
REDACTED = "[redacted]"
MAX_CALL_SECONDS = 24 * 3600  # a single call longer than a day is garbage: read as None

_MONITOR_UCID = re.compile(r"[0-9A-Za-z._:-]{1,64}")
_CLOCK = re.compile(r"(\d{1,3}):([0-5]?\d):([0-5]?\d)")  # H:MM:SS, HH:MM:SS, HHH:MM:SS
_MINUTES = re.compile(r"([0-5]?\d):([0-5]?\d)")  # MM:SS
_SECONDS = re.compile(r"\d{1,6}(?:\.0*)?")
_SURROGATES = re.compile("[\ud800-\udfff]")  # json pairs valid surrogates itself; any left are lone
# Apikey as a JSON member (plain, or escaped inside a JSON string as in {"data": "{\"Apikey\": ...}"}), as a form
# field, and as a multipart part. The key is matched in any case, with or without an underscore.
_KEY_NAME = r"api_?key"
_JSON_KEY_MEMBER = re.compile(
    r'("' + _KEY_NAME + r'"\s*:\s*)(?:"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)|[^,}\]\s]+)', re.IGNORECASE | re.DOTALL
)
_ESCAPED_KEY_MEMBER = re.compile(r'(\\"' + _KEY_NAME + r'\\"\s*:\s*)(?:\\"[^"\\]*\\"|[^,}\]\s\\]+)', re.IGNORECASE)
_MULTIPART_KEY_PART = re.compile(
    r'(content-disposition:[^\r\n]*\bname="?' + _KEY_NAME + r'"?[^\r\n]*\r?\n(?:[^\r\n]+\r?\n)*\r?\n)[^\r\n]*',
    re.IGNORECASE,
)


class MalformedCallSummary(ValueError):
    """The body is not a call summary we can read; the message says why, for the sender and the stored event."""


class CallSummaryTooLarge(MalformedCallSummary):
    """The body is over the size cap: the webhook answers 413 rather than 400."""


@dataclass(frozen=True)
class CallSummary:
    """One call as CloudAgent summarised it. Text fields are trimmed ("" when absent); times are CloudAgent's
    local wall clock with no zone (the caller knows the account's zone); durations are whole seconds. `data` is
    the JSON object as received, cleaned of NUL bytes and lone surrogates and without `Apikey`: safe to store."""

    monitor_ucid: str
    campaign_name: str
    user_name: str
    caller_id: str
    dialed_number: str
    uui: str
    call_type: str
    start_time: datetime | None
    end_time: datetime | None
    time_to_answer_seconds: int | None
    duration_seconds: int | None
    dial_status: str
    customer_status: str
    agent_status: str
    agent_id: str
    agent_name: str
    disposition: str
    comments: str
    audio_file: str
    hangup_by: str
    transfer_type: str
    skill: str
    did: str
    data: dict


# --- Parsing ---------------------------------------------------------------------------------------------------


def call_summary_parse(body: bytes, content_type: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> CallSummary:
    """Read a call summary in any shape a receiver meets: a form field `data` holding the JSON object
    (url-encoded, CloudAgent's documented shape, or multipart), or a JSON body — the object itself, the object
    under "data", or under "data" as a JSON string. The shape is told from the body and the content type, since
    senders mislabel bodies. Field names are matched in any case. Raises MalformedCallSummary."""
    if len(body) > max_bytes:
        raise CallSummaryTooLarge(f"the body is {len(body)} bytes, over the {max_bytes}-byte cap")
    data = _clean(_summary_object(body, content_type))
    fields = _fields_by_lower_name(data)
    monitor_ucid = _text(fields.get("monitorucid"), required="monitorUCID")
    if not monitor_ucid:
        raise MalformedCallSummary("the call summary has no monitorUCID")
    if not _MONITOR_UCID.fullmatch(monitor_ucid):
        raise MalformedCallSummary(f"monitorUCID {monitor_ucid[:70]!r} is not a CloudAgent call id")
    duration = fields.get("callduration")
    if not _text(duration):
        duration = fields.get("duration")
    return CallSummary(
        monitor_ucid=monitor_ucid,
        campaign_name=_text(fields.get("campaignname")),
        user_name=_text(fields.get("username")),
        caller_id=_text(fields.get("callerid")),
        dialed_number=_text(fields.get("dialednumber")),
        uui=_text(fields.get("uui")),
        call_type=_text(fields.get("type")),
        start_time=_provider_time(fields.get("starttime")),
        end_time=_provider_time(fields.get("endtime")),
        time_to_answer_seconds=_seconds(fields.get("timetoanswer")),
        duration_seconds=_seconds(duration),
        dial_status=_documented_spelling(_text(fields.get("dialstatus")), DIAL_STATUSES),
        customer_status=_documented_spelling(_text(fields.get("customerstatus")), CUSTOMER_STATUSES),
        agent_status=_text(fields.get("agentstatus")),
        agent_id=_text(fields.get("agentid")),
        agent_name=_text(fields.get("agentname")),
        disposition=_text(fields.get("disposition")),
        comments=_text(fields.get("comments")),
        audio_file=_web_link(_text(fields.get("audiofile"))),
        hangup_by=_text(fields.get("hangupby")),
        transfer_type=_text(fields.get("transfertype")),
        skill=_text(fields.get("skill")),
        did=_text(fields.get("did")),
        data=data,
    )


def _summary_object(body: bytes, content_type: str) -> dict:
    # A body that is not UTF-8 is read with replacement characters: a mangled agent name must not lose the call.
    text = body.decode("utf-8", "replace").strip()
    if not text:
        raise MalformedCallSummary("the body is empty")
    media_type = _media_type(content_type)
    if media_type == "multipart/form-data":
        field = _multipart_data_field(body, content_type)
    elif text[0] in '{["' or (media_type.endswith("json") and "=" not in text):
        document = _json(text, what="the body")
        if not isinstance(document, dict):
            raise MalformedCallSummary("the JSON body is not an object")
        field = document["data"] if "data" in document else document
    else:
        field = _form_data_field(text)
    if isinstance(field, str):
        field = _json(field.strip(), what='"data"')
    if not isinstance(field, dict):
        raise MalformedCallSummary('"data" is not a JSON object')
    return field


def _media_type(content_type: str) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def _form_data_field(text: str) -> str:
    try:
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except ValueError as exc:  # more fields than MAX_FORM_FIELDS
        raise MalformedCallSummary(f"the form cannot be read: {exc}") from exc
    for name, value in pairs:
        if name == "data":
            return value
    raise MalformedCallSummary('expected JSON or a form field data=<json>; the form has no "data" field')


def _multipart_data_field(body: bytes, content_type: str) -> str:
    header = "Content-Type: " + re.sub(r"[\r\n]", " ", content_type) + "\r\n\r\n"
    try:
        message = BytesParser(policy=policy.HTTP).parsebytes(header.encode("utf-8", "replace") + body)
        parts = list(message.iter_parts()) if message.is_multipart() else []
        for part in parts:
            if part.get_param("name", header="content-disposition") == "data":
                payload = part.get_payload(decode=True) or b""
                return payload.decode(part.get_content_charset() or "utf-8", "replace")
    except (MessageError, LookupError, ValueError, RecursionError) as exc:  # LookupError: an unknown charset
        raise MalformedCallSummary(f"the multipart body cannot be read: {str(exc)[:200]}") from exc
    if not parts:
        raise MalformedCallSummary("the multipart body has no parts (is its boundary right?)")
    raise MalformedCallSummary('the multipart form has no "data" field')


def _json(text: str, *, what: str):
    """json.loads behind a depth check: the C decoder recurses per nesting level, and a body of ten thousand
    "[" would otherwise end in RecursionError. NaN, Infinity and out-of-range numbers are refused: no database
    JSON column stores them."""
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise MalformedCallSummary(f"{what} is JSON nested {depth} levels deep; at most {MAX_JSON_DEPTH} are read")
    try:
        document = json.loads(text, parse_constant=refuse_constant, parse_float=finite_float)
    except (ValueError, RecursionError) as exc:
        raise MalformedCallSummary(f"{what} is not valid JSON: {str(exc)[:200]}") from exc
    if isinstance(document, str) and document.lstrip().startswith("{"):
        return _json(document, what=what)  # a whole body sent as one JSON string
    return document


def _clean(value):
    """The object as it may be stored: Apikey dropped at any depth, and NUL bytes and lone surrogates (valid
    JSON, but neither PostgreSQL text nor jsonb takes them) stripped from names and values. Depth is already
    bounded by _json."""
    if isinstance(value, str):
        return _SURROGATES.sub("", value.replace("\x00", ""))
    if isinstance(value, dict):
        return {_clean(name): _clean(item) for name, item in value.items() if not _is_api_key_name(_clean(name))}
    if isinstance(value, list):
        return [_clean(item) for item in value]
    return value


def _is_api_key_name(name: str) -> bool:
    return re.sub(r"[^a-z]", "", name.lower()) == "apikey"


def _fields_by_lower_name(data: dict) -> dict:
    """The first field of each name, names compared in any case: "monitorUcid" and "AgentId" are read too."""
    fields: dict = {}
    for name, value in data.items():
        fields.setdefault(name.lower(), value)
    return fields


def _text(value, *, required: str = "") -> str:
    """A field as trimmed text. CloudAgent sends strings; a number or a boolean is read as its text. An object or
    a list is no field value: "" for an optional field, malformed for a required one."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else str(value)
    if required:
        raise MalformedCallSummary(f"{required} is a JSON {type(value).__name__}, not a value")
    return ""


def _provider_time(value) -> datetime | None:
    """CloudAgent writes "YYYY-MM-DD HH:MM:SS" in its own local time. Anything unreadable, zoned (not what
    CloudAgent writes, so not to be guessed at), or outside the years 2000-2100 is None: a bad time must not
    lose the call."""
    moment = provider_datetime(_text(value))
    if moment is None or moment.tzinfo is not None:
        return None
    return moment


def _seconds(value) -> int | None:
    """A duration as whole seconds: "HH:MM:SS" as documented, also "MM:SS" and plain seconds ("42", 42).
    None when missing, unreadable or longer than a day."""
    text = _text(value)
    if match := _CLOCK.fullmatch(text):
        hours, minutes, seconds = (int(part) for part in match.groups())
        total = hours * 3600 + minutes * 60 + seconds
    elif match := _MINUTES.fullmatch(text):
        minutes, seconds = (int(part) for part in match.groups())
        total = minutes * 60 + seconds
    elif _SECONDS.fullmatch(text):
        total = int(text.split(".")[0])
    else:
        return None
    return total if total <= MAX_CALL_SECONDS else None


def _documented_spelling(value: str, documented: tuple[str, ...]) -> str:
    for spelling in documented:
        if value.lower() == spelling.lower():
            return spelling
    return value


def _web_link(url: str) -> str:
    """The recording's URL is shown as a link in the admin: only http(s) to a host, never javascript: or data:."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    return url if parts.scheme.lower() in ("http", "https") and parts.hostname else ""


# --- Redaction -------------------------------------------------------------------------------------------------


def call_summary_body_redact(body: bytes, content_type: str) -> bytes:
    """The raw body with every Apikey value replaced by "[redacted]", so it can be stored and logged. The rest
    stays as sent, except that bytes which are not UTF-8 become U+FFFD and a form field holding the key is
    percent-encoded afresh. Works on bodies too broken to parse: JSON members are found by pattern, plain or
    escaped inside a JSON string (the "data" field), form fields are decoded one by one (the JSON inside a
    url-encoded `data` field is percent-encoded), multipart parts named Apikey are blanked. A multipart part in
    base64 or quoted-printable transfer encoding is not looked into: HTTP clients, CloudAgent's included, send
    parts as they are."""
    text = body.decode("utf-8", "replace")
    media_type = _media_type(content_type)
    if media_type == "application/x-www-form-urlencoded" or (
        media_type != "multipart/form-data" and text.strip()[:1] not in ("{", "[", '"', "")
    ):
        text = "&".join(_form_pair_redact(pair) for pair in text.split("&"))
    # Whatever the shape was taken to be, the patterns run over the whole text too: a mislabelled body, or a
    # form whose JSON was sent without percent-encoding, must not keep its key.
    text = _MULTIPART_KEY_PART.sub(lambda match: match.group(1) + REDACTED, _json_text_redact(text))
    return text.encode("utf-8")


def _json_text_redact(text: str) -> str:
    text = _JSON_KEY_MEMBER.sub(lambda match: f'{match.group(1)}"{REDACTED}"', text)
    return _ESCAPED_KEY_MEMBER.sub(lambda match: f'{match.group(1)}\\"{REDACTED}\\"', text)


def _form_pair_redact(pair: str) -> str:
    name, equals, value = pair.partition("=")
    if _is_api_key_name(unquote_plus(name)):
        return f"{name}{equals}{quote_plus(REDACTED)}" if equals else pair
    decoded = unquote_plus(value)
    redacted = _json_text_redact(decoded)
    return pair if redacted == decoded else f"{name}={quote_plus(redacted)}"
