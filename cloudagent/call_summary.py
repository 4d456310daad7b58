"""CloudAgent's call summaries ("URL to Push", docs/cloudagent-call-summary.md): one post per dialled call.

The post is a form field `data` holding a JSON object (some senders post the object as the JSON body, or wrap it
as {"data": ...}); every value is a string. It carries `Apikey`, the account's API key in plain text, so
`call_summary_redact` strips it before the body is stored or logged anywhere. Nothing is signed. With "send
callback immediately" the first post comes without `Disposition`; a later one for the same `monitorUCID` has it.
"""

import json
import re
from dataclasses import dataclass
from datetime import datetime
from email.parser import BytesParser
from email.policy import HTTP
from urllib.parse import parse_qsl, urlencode

# The documented values, in the provider's own spelling (it writes "SubcriberAbsent").
DIAL_STATUSES = ("answered", "not_answered", "ring", "invalid_number", "exception")
CUSTOMER_STATUSES = (
    "answered",
    "not_answered",
    "Busy",
    "Congestion",
    "InvalidNumber",
    "NoResponse",
    "SubcriberAbsent",
)

APIKEY_FIELDS = frozenset({"apikey", "api_key"})
REDACTED = "[removed]"
# Last resort for a body we cannot parse: "Apikey": "...", Apikey=..., \"Apikey\":\"...\" in any case.
_APIKEY_ANYWHERE = re.compile(
    r"""(?ix)
    (\\?["']?api_?key\\?["']?\s*[:=]\s*)   # the key's name and its separator
    (\\?"(?:[^"\\]|\\[^"])*\\?"|[^\s&,}\r\n]*)   # a quoted value, or a bare one up to a delimiter
    """
)
_MULTIPART_APIKEY = re.compile(r'(?is)(name="?api_?key"?\r?\n(?:[^\r\n]+\r?\n)*\r?\n)([^\r\n]*)')
_CLOCK = re.compile(r"(\d{1,3}):([0-5]?\d):([0-5]?\d)")


class MalformedCallSummary(ValueError):
    """The body is not a call summary we can read; the message says why (it never quotes the API key)."""


@dataclass(frozen=True)
class CallSummary:
    monitor_ucid: str
    campaign_name: str
    caller_id: str
    dialed_number: str
    uui: str
    call_type: str
    start_time: datetime | None  # as written: CloudAgent's local time, no zone
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
    raw: dict  # the JSON object, without Apikey


def call_summary_parse(body: str | bytes, content_type: str = "") -> CallSummary:
    """Read any shape a sender uses: form data=<json> (url-encoded or multipart), the JSON object itself, or
    {"data": <object or JSON string>}. Keys are matched without regard to case; unknown ones stay in `raw`."""
    data = _without_apikey(_data_object(body, content_type))
    fields = {key.lower(): value for key, value in data.items()}

    def text(*names: str) -> str:
        for name in names:
            value = fields.get(name.lower())
            if value is not None and str(value).strip():
                return str(value).replace("\x00", "").strip()
        return ""

    ucid = text("monitorUCID", "monitorUcid", "UCID")
    if not ucid:
        raise MalformedCallSummary("the summary has no monitorUCID")
    if len(ucid) > 64:
        raise MalformedCallSummary("monitorUCID is longer than 64 characters")
    return CallSummary(
        monitor_ucid=ucid,
        campaign_name=text("CampaignName"),
        caller_id=text("CallerID", "CallerId"),
        dialed_number=text("DialedNumber"),
        uui=text("UUI"),
        call_type=text("Type", "CallType"),
        start_time=_moment(text("StartTime")),
        end_time=_moment(text("EndTime")),
        time_to_answer_seconds=_seconds(text("TimeToAnswer")),
        duration_seconds=_seconds(text("CallDuration", "Duration")),
        dial_status=text("DialStatus"),
        customer_status=text("CustomerStatus"),
        agent_status=text("AgentStatus"),
        agent_id=text("AgentID"),
        agent_name=text("AgentName"),
        disposition=text("Disposition"),
        comments=text("Comments"),
        audio_file=text("AudioFile"),
        hangup_by=text("HangupBy"),
        transfer_type=text("TransferType"),
        skill=text("Skill"),
        did=text("Did", "DID"),
        raw=data,
    )


def call_summary_redact(body: str | bytes, content_type: str = "") -> str:
    """The body as text with every Apikey value removed, in whatever shape it came; a body we cannot parse has
    anything that looks like an API key field blanked."""
    text = body.decode("utf-8", "backslashreplace") if isinstance(body, bytes) else body
    media = content_type.split(";")[0].strip().lower()
    stripped = text.strip()
    if media == "multipart/form-data":
        text = _MULTIPART_APIKEY.sub(lambda m: m.group(1) + REDACTED, text)
    elif stripped[:1] in '{["':
        try:
            text = json.dumps(_scrub(json.loads(stripped)))
        except ValueError:
            pass
    elif "=" in stripped:
        pairs = parse_qsl(stripped, keep_blank_values=True)
        if pairs:
            text = urlencode([(k, _scrub_text(v)) for k, v in pairs if k.lower() not in APIKEY_FIELDS])
    return _APIKEY_ANYWHERE.sub(lambda m: m.group(1) + f'"{REDACTED}"', text)


def _scrub_text(value: str) -> str:
    if value.lstrip()[:1] in '{["':
        try:
            return json.dumps(_scrub(json.loads(value)))
        except ValueError:
            return value
    return value


def _scrub(value):
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items() if str(k).lower() not in APIKEY_FIELDS}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, str):
        return _scrub_text(value)
    return value


def _without_apikey(data: dict) -> dict:
    return {key: value for key, value in data.items() if str(key).lower() not in APIKEY_FIELDS}


def _data_object(body: str | bytes, content_type: str) -> dict:
    raw = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
    media = content_type.split(";")[0].strip().lower()
    if media == "multipart/form-data":
        document = _multipart_data(raw, content_type)
    else:
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            raise MalformedCallSummary("the body is not UTF-8") from exc
        if not text:
            raise MalformedCallSummary("the body is empty")
        if text[0] in '{["':
            document = _json(text)
        else:
            pairs = dict(parse_qsl(text, keep_blank_values=True))
            if "data" in pairs:
                document = _json(pairs["data"].strip())
            elif any(key.lower() == "monitorucid" for key in pairs):
                document = pairs  # the fields posted flat, one form field each
            else:
                raise MalformedCallSummary("expected JSON or a form field data=<json>, found neither")
    if isinstance(document, dict) and "data" in document and not any(k.lower() == "monitorucid" for k in document):
        document = document["data"]
        if isinstance(document, str):
            document = _json(document.strip())
    if not isinstance(document, dict):
        raise MalformedCallSummary("the summary is not a JSON object")
    return document


def _json(text: str):
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise MalformedCallSummary(f"the summary is not valid JSON (at character {getattr(exc, 'pos', '?')})") from exc
    if isinstance(document, str) and document.lstrip().startswith("{"):
        return _json(document)
    return document


def _multipart_data(raw: bytes, content_type: str):
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw
    )
    if not message.is_multipart():
        raise MalformedCallSummary("the multipart body cannot be read")
    fields = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            payload = part.get_payload(decode=True) or b""
            fields[name] = payload.decode("utf-8", "replace")
    if "data" in fields:
        return _json(fields["data"].strip())
    if any(key.lower() == "monitorucid" for key in fields):
        return fields
    raise MalformedCallSummary('the form has no "data" field')


def _moment(text: str) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _seconds(text: str) -> int | None:
    """HH:MM:SS as CloudAgent writes durations, or a plain number of seconds."""
    if not text:
        return None
    if text.isdigit():
        return int(text)
    match = _CLOCK.fullmatch(text)
    if match is None:
        return None
    hours, minutes, seconds = (int(part) for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds
