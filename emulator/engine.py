"""Emulator of Ozonetel CloudAgent's "Add Campaign Bulk Data (V4)" API, for the demo, the tests and the benchmarks.

Standard library only, and no leadhub import: it shares no code with our client (uploads/cloudagent.py), so it
catches the client's mistakes instead of repeating them. It follows shared/cloudagent/contract.md ("contract"
below) and the provider's page beside it. Whatever the contract marks as inferred, and every choice made here
where the provider is silent, is a setting, so tests can try each reading.

    python -m uploads.emulator [--port 8900] [--config FILE] [...]      (--help lists every setting)

HTTP: POST the API path below; GET /files/<name>?expires=..&signature=.. (failed-rows files, pre-signed style);
GET /_emulator/inspect[?sections=a,b]; POST /_emulator/config | reset | fault | process-now (JSON control).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import hmac
import http.client
import importlib.util
import io
import itertools
import json
import random
import re
import secrets
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timedelta, timezone
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, quote_plus, urlencode

API_PATH = "/cloudAgentRestAPI/index.php/AddCampaignBulkDataV4/addBulkData/format/json"
DEFAULT_CONFIG = Path(__file__).with_name("emulator_demo.json")
USER_AGENT = "cloudagent-emulator"
REDACTED = "[redacted]"
# Asia/Kolkata has been UTC+05:30 without DST since 1945: a fixed offset needs no tzdata on the host.
KOLKATA = timezone(timedelta(hours=5, minutes=30), "IST")
PROVIDER_TIME = "%Y-%m-%d %H:%M:%S"  # contract, callback: startDateTime / endDateTime
MAX_BODY_BYTES = 64 * 1024 * 1024
PROCESS_NOW_WAIT = 60.0  # seconds process-now waits for callbacks other threads are still delivering
FAULTS = ("error", "non_json", "drop", "slow", "rate_limit")
CALLBACK_SHAPES = ("json-object", "json-string", "form", "json-string-unescaped")
FILE_FORMATS = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}

# contract, Synchronous answers: the documented bodies, checked in this order.
API_KEY_EMPTY = {"status": "error", "message": "apiKey should not be empty"}
USER_NAME_EMPTY = {"status": "error", "message": "userName should not be empty"}
INVALID_CREDENTIALS = {"status": "error", "message": "Invalid userName or apiKey"}
CAMPAIGN_NAME_EMPTY = {"status": "error", "message": "campaignName should not be empty"}
INVALID_CAMPAIGN = {"status": "error", "message": "Invalid Campaign Name"}
INVALID_DATA = {"status": "failure", "message": "Please provide valid data"}
RATE_LIMITED = {"status": "error", "message": "too many Requests and failed to add Data to queue"}
# Not documented: the page only says "maximum 500 per request". More rows than that is not valid data.
TOO_MANY_ROWS = INVALID_DATA

# contract, The asynchronous result, and Related provider facts: documented statuses, messages and reasons.
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
# contract, Limits: letters, digits, _, space and ( ) . + $ % - :   read strictly: ASCII letters only.
NAME = re.compile(r"[A-Za-z0-9_ ().+$%\-:]*")
PRIORITY = re.compile(r"\d{1,2}")

SERVER_ERROR_PAGE = (
    b"<html><head><title>500 Internal Server Error</title></head><body><h1>Internal Server Error</h1></body></html>"
)
NOT_JSON_PAGE = (
    b"<html><head><title>CloudAgent</title></head>"
    b"<body><h1>Service temporarily unavailable</h1><p>Please try again later.</p></body></html>"
)


# --- Settings ---------------------------------------------------------------------------------------------------


def _setting(default, help_text: str, choices: tuple[str, ...] | None = None):
    return field(default=default, metadata={"help": help_text, "choices": choices})


@dataclass(frozen=True)
class Settings:
    """Runtime settings. Each one is a CLI flag (--process-delay), a key of the config file's "settings" object
    and of POST /_emulator/config (process_delay); a change applies from the next request on."""

    requests_per_window: int = _setting(5, "requests one account may make in any window (contract: 5 a minute)")
    window_seconds: float = _setting(60.0, "length of the sliding rate-limit window, in seconds")
    rate_limited_count: bool = _setting(
        False, "rate-limited requests count toward the window too (the provider does not say)"
    )
    max_rows: int = _setting(500, "rows allowed in one request (contract: 500)")
    max_row_chars: int = _setting(2000, "characters allowed per row, headers included (contract: 2000)")
    error_status: int = _setting(200, "HTTP status of the documented error and failure answers (contract: 200)")
    rate_limit_status: int = _setting(200, "HTTP status of the rate-limit answer (contract: 200)")
    process_delay: float = _setting(1.0, "seconds an accepted request waits in the queue before it is processed")
    map_match: str = _setting(
        "exact", "how bulkData.map must match the campaign's map: same order, or any order", ("exact", "any-order")
    )
    empty_priority_fails: bool = _setting(
        False, "an empty Priority cell fails its row (by default it counts as not passed)"
    )
    dnd: tuple[str, ...] = _setting((), "DND numbers, compared on their last 10 digits")
    failed_file_ttl: float = _setting(86400.0, "seconds a failed-rows link stays valid (contract: 24 hours)")
    failed_file_format: str = _setting("csv", "failed-rows file format (xlsx needs openpyxl)", tuple(FILE_FORMATS))
    empty_failed_path_on_partial: bool = _setting(
        False, 'a Success with rows not processed gives failedFilePath "" (the provider\'s sample)'
    )
    callback_shape: str = _setting("json-object", "body of the callback POST", CALLBACK_SHAPES)
    callback_delay: float = _setting(0.0, "extra seconds between processing and the callback")
    duplicate_callbacks: int = _setting(1, "send each callback this many times")
    callback_before_response: bool = _setting(
        False, "process and call back before the synchronous answer is sent (the client has no transactionId yet)"
    )
    callback_padding: bool = _setting(False, 'wrap every callback value in stray spaces, like the docs\' " xxxx "')
    callback_retries: int = _setting(2, "further tries of a callback after a connection error or a 5xx")
    callback_retry_delay: float = _setting(1.0, "seconds between tries of a callback")
    callback_timeout: float = _setting(10.0, "seconds to wait for the receiver's answer to a callback")
    error_rate: float = _setting(0.0, "fraction of requests answered HTTP 500 with a non-JSON body")
    non_json_rate: float = _setting(0.0, "fraction of requests answered HTTP 200 with an HTML body")
    drop_rate: float = _setting(0.0, "fraction of requests processed, then closed without an answer")
    slow_rate: float = _setting(0.0, "fraction of requests processed, then answered after --slow-seconds")
    slow_seconds: float = _setting(5.0, "delay of a slow answer, in seconds")
    faults_after_queue: bool = _setting(
        False, "error and non_json faults strike after the request was counted and queued"
    )
    seed: int = _setting(0, "seed of the fault RNG (re-applied by reset)")

    def __post_init__(self):
        problems = []
        for item in fields(self):
            choices = item.metadata["choices"]
            if choices and getattr(self, item.name) not in choices:
                problems.append(f"{item.name} must be one of {', '.join(choices)}")
        rates = (self.error_rate, self.non_json_rate, self.drop_rate, self.slow_rate)
        if any(not 0 <= rate <= 1 for rate in rates) or sum(rates) > 1:
            problems.append("fault rates must lie in 0..1 and add up to at most 1")
        if min(self.requests_per_window, self.max_rows, self.max_row_chars, self.duplicate_callbacks) < 1:
            problems.append("requests_per_window, max_rows, max_row_chars and duplicate_callbacks must be >= 1")
        if self.window_seconds <= 0 or self.callback_timeout <= 0:
            problems.append("window_seconds and callback_timeout must be > 0")
        if min(self.process_delay, self.failed_file_ttl, self.callback_delay, self.callback_retry_delay) < 0:
            problems.append("delays and failed_file_ttl must be >= 0")
        if min(self.slow_seconds, self.callback_retries) < 0:
            problems.append("slow_seconds and callback_retries must be >= 0")
        if not (100 <= self.error_status <= 599 and 100 <= self.rate_limit_status <= 599):
            problems.append("error_status and rate_limit_status must be HTTP statuses")
        if self.failed_file_format == "xlsx" and importlib.util.find_spec("openpyxl") is None:
            problems.append("failed_file_format xlsx needs openpyxl installed")
        if problems:
            raise ValueError("; ".join(problems))

    def updated(self, changes: Mapping[str, object]) -> Settings:
        """A copy with `changes` (JSON or CLI values) applied; ValueError names unknown or invalid ones."""
        current = asdict(self)
        unknown = sorted(set(changes) - set(current))
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
        return replace(self, **{name: _coerce(name, current[name], value) for name, value in changes.items()})


SETTING_NAMES = tuple(item.name for item in fields(Settings))


def _coerce(name: str, current: object, value: object) -> object:
    """A value in the type of the setting's default; JSON numbers, booleans and lists arrive loosely typed."""
    kind = type(current)
    if kind is bool and isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if kind is tuple and isinstance(value, list | tuple):
        return tuple(str(item) for item in value)
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind in (bool, int, str) and type(value) is kind:
        return value
    raise ValueError(f"{name}: expected {kind.__name__}, got {value!r}")


# --- Requests ---------------------------------------------------------------------------------------------------


def parse_fields(content_type: str, body: bytes) -> dict[str, object]:
    """The request's fields from a form-urlencoded, multipart or JSON body (contract, Request: all three).

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
            name: value if name == "bulkData" else _text(value) for name, value in document.items() if value is not None
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


def _text(value: object) -> str:
    """A cell or field as the provider's PHP would read it: JSON null is empty, booleans are true/false."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def _flag(value: object) -> bool:
    return _text(value).strip().lower() == "true"


def _national(phone: str) -> str:
    return re.sub(r"\D", "", phone)[-10:]


def _now_text() -> str:
    return datetime.now(KOLKATA).isoformat(timespec="milliseconds")


# --- State ------------------------------------------------------------------------------------------------------


@dataclass
class Campaign:
    """A campaign as CloudAgent holds it: its column map and the leads uploaded to it."""

    name: str
    kind: str  # "outbound" or "inbound"
    map: list[str]
    leads: list[tuple[str, list[str], list]] = field(default_factory=list)  # (transactionId, map, row)
    phones: set[str] = field(default_factory=set)
    started: bool = False


@dataclass
class Account:
    user_name: str
    api_key: str
    campaigns: dict[str, Campaign]


@dataclass
class Transaction:
    """An accepted request: queued, then processed once into the data its callback carries."""

    id: str
    user_name: str
    campaign: Campaign
    map: list[str]
    rows: list[list]
    check_duplicate: bool
    is_delete: bool
    start: bool
    callback_url: str
    file_base_url: str
    due: float
    state: str = "queued"
    result: dict | None = None
    failed_rows: list[dict] = field(default_factory=list)


@dataclass
class Callback:
    """One POST to a callBackUrl (a duplicate is a Callback of its own). state: waiting -> sending -> answered
    (our side gave an HTTP answer below 500) or failed (every try ended in a connection error or a 5xx)."""

    id: int
    transaction_id: str
    url: str
    shape: str
    content_type: str
    body: str
    copy: int
    due: float
    state: str = "waiting"
    tries: list[dict] = field(default_factory=list)


@dataclass
class Reply:
    """What the HTTP handler does with an API request once the emulator has decided."""

    status: int
    body: bytes
    content_type: str = "application/json"
    delay: float = 0.0
    drop: bool = False
    callbacks_first: list[Callback] = field(default_factory=list)
    generation: int = 0


class Emulator:
    """All state, behind one lock (a Condition, so the queue worker can sleep on it).

    Handler threads call `add_bulk_data` and the control methods; one worker thread processes the queue in
    arrival order, as the provider's page says ("added to the outbound campaign in a queued manner"); each
    callback is delivered by a thread of its own, so a slow receiver never holds up the queue."""

    def __init__(self, accounts: list[Account], settings: Settings):
        self._lock = threading.Condition()
        self._accounts = {account.user_name: account for account in accounts}
        self._api_keys = {account.api_key for account in accounts if account.api_key}
        self.settings = settings
        self._secret = secrets.token_bytes(32)  # signs failed-file links
        self._stopping = threading.Event()
        self._worker = threading.Thread(target=self._work, name="cloudagent-queue", daemon=True)
        self._transaction_numbers = itertools.count(1)  # never reset: transactionIds stay unique across resets
        self._id_digits = random.Random()
        self._generation = 0
        self._sending = 0
        self._clear()

    def _clear(self) -> None:
        # A callback still in flight belongs to the old generation: it is neither sent nor recorded.
        self._generation += 1
        self._requests: list[dict] = []
        self._transactions: dict[str, Transaction] = {}
        self._queue: deque[Transaction] = deque()
        self._callbacks: list[Callback] = []
        self._files: dict[str, tuple[str, bytes]] = {}
        self._window: defaultdict[str, deque[float]] = defaultdict(deque)
        self._forced: deque[str] = deque()
        self._rng = random.Random(self.settings.seed)
        for account in self._accounts.values():
            for campaign in account.campaigns.values():
                campaign.leads, campaign.phones, campaign.started = [], set(), False

    def start(self) -> None:
        self._worker.start()

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            self._lock.notify_all()
        self._worker.join(timeout=5)

    def pause(self, seconds: float) -> None:
        """Sleep that ends early on shutdown."""
        self._stopping.wait(seconds)

    # --- Control ------------------------------------------------------------------------------------------------

    def configure(self, changes: Mapping[str, object]) -> dict:
        with self._lock:
            self.settings = self.settings.updated(changes)
            if "seed" in changes:
                self._rng = random.Random(self.settings.seed)
            self._lock.notify_all()
            return asdict(self.settings)

    def reset(self) -> dict:
        """Forget requests, queue, leads, callbacks, files, rate-limit history and forced faults; keep settings."""
        with self._lock:
            self._clear()
            self._lock.notify_all()
        return {"reset": True}

    def force_fault(self, fault: object, count: object = 1) -> dict:
        if fault not in FAULTS:
            raise ValueError(f"fault must be one of {', '.join(FAULTS)}")
        if type(count) is not int or count < 1:
            raise ValueError("count must be a whole number >= 1")
        with self._lock:
            self._forced.extend([fault] * count)
            return {"forced_faults": list(self._forced)}

    def process_now(self) -> dict:
        """Process every queued request and send every waiting callback now, then wait for the callbacks other
        threads are delivering: a test gets a settled state without sleeping."""
        with self._lock:
            processed = len(self._queue)
            while self._queue:
                self._process(self._queue.popleft())
            waiting = [callback for callback in self._callbacks if callback.state == "waiting"]
            generation = self._generation
        for callback in waiting:
            self.deliver(callback, generation)
        with self._lock:
            settled = self._lock.wait_for(lambda: self._sending == 0, timeout=PROCESS_NOW_WAIT)
        return {"processed": processed, "callbacks_sent": len(waiting), "settled": settled}

    def inspect(self, sections: list[str] | None = None) -> dict:
        """Everything received and done, as JSON-ready copies. Never an apiKey."""
        views = {
            "settings": lambda: asdict(self.settings),
            "now": lambda: {"time": time.time(), "monotonic": time.monotonic()},
            "accounts": self._accounts_view,
            "requests": lambda: [dict(record) for record in self._requests],
            "transactions": lambda: [self._transaction_view(tx) for tx in self._transactions.values()],
            "queue": lambda: [tx.id for tx in self._queue],
            "leads": self._leads_view,
            "callbacks": lambda: [self._callback_view(callback) for callback in self._callbacks],
            "forced_faults": lambda: list(self._forced),
        }
        unknown = sorted(set(sections or ()) - set(views))
        if unknown:
            raise ValueError(f"unknown section(s): {', '.join(unknown)}")
        with self._lock:
            return {name: view() for name, view in views.items() if not sections or name in sections}

    def inspect_json(self, sections: list[str] | None = None) -> bytes:
        """inspect() as JSON with every configured apiKey blotted out, wherever a client may have put one (a
        misnamed field, a callBackUrl's query)."""
        text = json.dumps(self.inspect(sections))
        for key in self._api_keys:
            for form in {json.dumps(key)[1:-1], quote(key, safe=""), quote_plus(key)}:
                text = text.replace(form, REDACTED)
        return text.encode()

    def _accounts_view(self) -> list[dict]:
        return [
            {
                "userName": account.user_name,
                "campaigns": [
                    {
                        "name": campaign.name,
                        "type": campaign.kind,
                        "map": list(campaign.map),
                        "started": campaign.started,
                        "leads": len(campaign.leads),
                    }
                    for campaign in account.campaigns.values()
                ],
            }
            for account in self._accounts.values()
        ]

    def _leads_view(self) -> dict[str, list[dict]]:
        """Campaign name -> its leads: each row's values under their headers, plus transactionId and userName."""
        leads: dict[str, list[dict]] = {}
        for account in self._accounts.values():
            for campaign in account.campaigns.values():
                leads.setdefault(campaign.name, []).extend(
                    {**dict(zip(column_map, row, strict=True)), "transactionId": tx_id, "userName": account.user_name}
                    for tx_id, column_map, row in campaign.leads
                )
        return leads

    @staticmethod
    def _transaction_view(tx: Transaction) -> dict:
        return {
            "transactionId": tx.id,
            "userName": tx.user_name,
            "campaign": tx.campaign.name,
            "rows": len(tx.rows),
            "checkDuplicate": tx.check_duplicate,
            "isDelete": tx.is_delete,
            "start": tx.start,
            "callBackUrl": tx.callback_url,
            "state": tx.state,
            "result": tx.result,
            "failed_rows": list(tx.failed_rows),
        }

    @staticmethod
    def _callback_view(callback: Callback) -> dict:
        last = callback.tries[-1] if callback.tries else {}
        return {
            "id": callback.id,
            "transactionId": callback.transaction_id,
            "url": callback.url,
            "shape": callback.shape,
            "content_type": callback.content_type,
            "body": callback.body,
            "copy": callback.copy,
            "state": callback.state,
            "tries": list(callback.tries),
            "status": last.get("status"),
        }

    # --- The API ------------------------------------------------------------------------------------------------

    def add_bulk_data(self, fields: dict[str, object], content_type: str, file_base_url: str) -> Reply:
        """Decide the answer to one API request, record it, and queue (or process) what is accepted."""
        with self._lock:
            settings = self.settings
            record = {
                "id": len(self._requests) + 1,
                "time": time.time(),
                "monotonic": time.monotonic(),  # the rate limiter's clock
                "received_at": _now_text(),
                "userName": fields.get("userName"),
                "campaign": fields.get("campaignName"),
                "rows": None,
                "map": None,
                "content_type": content_type,
                "fields": self._shown_fields(fields),
                "outcome": "unprocessed",
                "counted": False,
                "fault": self._forced.popleft() if self._forced else self._draw_fault(settings),
                "http_status": None,
                "answer": None,
                "transactionId": None,
            }
            self._requests.append(record)
            fault = record["fault"]
            if fault in ("error", "non_json") and not settings.faults_after_queue:
                return self._garbage(record, fault)

            if fault == "rate_limit":  # forced: answered at once, not counted (no real window was full)
                answer, tx = RATE_LIMITED, None
            else:
                answer, tx = self._decide(record, fields, file_base_url, settings)
            if tx is not None:
                record.update(outcome="accepted", transactionId=tx.id)
            else:
                record["outcome"] = "rate_limited" if answer is RATE_LIMITED else "refused"
            if answer is RATE_LIMITED:
                status = settings.rate_limit_status
            else:
                status = 200 if tx is not None else settings.error_status
            reply = Reply(status=status, body=json.dumps(answer).encode())
            record.update(http_status=status, answer=answer)

            if tx is not None:
                self._transactions[tx.id] = tx
                if settings.callback_before_response:
                    reply.callbacks_first, reply.generation = self._process(tx), self._generation
                else:
                    self._queue.append(tx)
                    self._lock.notify_all()
            if fault in ("error", "non_json"):
                return self._garbage(record, fault)
            reply.delay = settings.slow_seconds if fault == "slow" else 0.0
            reply.drop = fault == "drop"
            return reply

    def _decide(
        self, record: dict, fields: dict, file_base_url: str, settings: Settings
    ) -> tuple[dict, Transaction | None]:
        """The synchronous answer, checked in the documented order (contract, Synchronous answers)."""
        api_key, user_name, campaign_name = (_text(fields.get(name)) for name in ("apiKey", "userName", "campaignName"))
        if not api_key:
            return API_KEY_EMPTY, None
        if not user_name:
            return USER_NAME_EMPTY, None
        account = self._accounts.get(user_name)
        if account is None or not hmac.compare_digest(account.api_key.encode(), api_key.encode()):
            return INVALID_CREDENTIALS, None
        if not campaign_name:
            return CAMPAIGN_NAME_EMPTY, None
        campaign = account.campaigns.get(campaign_name)
        if campaign is None or campaign.kind != "outbound":
            return INVALID_CAMPAIGN, None
        bulk = parse_bulk_data(fields.get("bulkData"))
        if bulk is None:
            return INVALID_DATA, None
        column_map, rows = bulk
        record.update(map=column_map, rows=len(rows))
        admitted = self._admit(user_name, record["monotonic"], settings)
        record["counted"] = admitted or settings.rate_limited_count
        if not admitted:
            return RATE_LIMITED, None
        # The size check comes after the rate limiter, so an oversized request has spent its slot.
        if len(rows) > settings.max_rows:
            return TOO_MANY_ROWS, None
        tx = Transaction(
            id=self._transaction_id(),
            user_name=user_name,
            campaign=campaign,
            map=column_map,
            rows=rows,
            check_duplicate=_flag(fields.get("checkDuplicate")),
            is_delete=_flag(fields.get("isDelete")),
            start=_text(fields.get("action")).strip().lower() == "start",
            callback_url=_text(fields.get("callBackUrl")).strip(),
            file_base_url=file_base_url,
            due=record["monotonic"] + settings.process_delay,
        )
        return {"transactionId": tx.id, "status": "success", "message": "queued successfully"}, tx

    def _admit(self, user_name: str, now: float, settings: Settings) -> bool:
        """Sliding log per account: at most N counted requests in any window (now - W, now]. The provider's window
        is not documented (contract, Limits); a sliding one is the strictest reading a client must survive."""
        window = self._window[user_name]
        while window and window[0] <= now - settings.window_seconds:
            window.popleft()
        admitted = len(window) < settings.requests_per_window
        if admitted or settings.rate_limited_count:
            window.append(now)
        return admitted

    def _transaction_id(self) -> str:
        """24 or 25 digits, like the documented ids: epoch seconds, a sequence number, random digits."""
        sequence = next(self._transaction_numbers) % 10**6
        return f"{int(time.time())}{sequence:06d}{self._id_digits.randrange(10**7, 10**9)}"

    def _draw_fault(self, settings: Settings) -> str | None:
        """One draw per request not forced, whatever the rates: a seed gives the same faults to the same requests."""
        draw = self._rng.random()
        for fault, rate in (
            ("error", settings.error_rate),
            ("non_json", settings.non_json_rate),
            ("drop", settings.drop_rate),
            ("slow", settings.slow_rate),
        ):
            if draw < rate:
                return fault
            draw -= rate
        return None

    def _garbage(self, record: dict, fault: str) -> Reply:
        """A 500 from the PHP application, or an HTML page from something in front of it (the non-JSON cases a
        client must survive)."""
        status, page = (500, SERVER_ERROR_PAGE) if fault == "error" else (200, NOT_JSON_PAGE)
        record.update(http_status=status, answer=page.decode())
        return Reply(status=status, body=page, content_type="text/html; charset=UTF-8")

    @staticmethod
    def _shown_fields(fields: dict[str, object]) -> dict[str, object]:
        """The fields for inspection: no bulkData (see "map" and "rows"), and no apiKey value, even a wrong one or
        one sent under a misspelt name (inspect_json also blots out the configured keys anywhere)."""
        shown = {}
        for name, value in fields.items():
            if name == "bulkData":
                continue
            text = _text(value)
            shown[name] = REDACTED if text and re.sub(r"[^a-z]", "", name.lower()) == "apikey" else text
        return shown

    # --- Processing (the lock is held) ----------------------------------------------------------------------

    def _process(self, tx: Transaction) -> list[Callback]:
        """Add the rows to the campaign and build the callback (contract, The asynchronous result)."""
        settings = self.settings
        started = datetime.now(KOLKATA)
        total = len(tx.rows)
        if self._map_fits(tx, settings):
            status, message = UPLOADED
            failed = self._add_rows(tx, settings)
            not_processed = len(failed)
        else:
            status, message = UPLOAD_FAILED
            failed, not_processed = [], total
        file_url = ""
        if failed and not settings.empty_failed_path_on_partial:
            file_url = self._store_failed_file(tx, failed, settings)
        if status == "Success" and tx.start:
            tx.campaign.started = True
        tx.state = "processed"
        tx.failed_rows = [
            {"index": index, "PhoneNumber": _text(row[tx.map.index("PhoneNumber")]), "reason": reason}
            for index, row, reason in failed
        ]
        tx.result = {  # contract: every value a string, counts included; keys in the documented order
            "totalNoUploaded": str(total),
            "numbersProcessed": str(total - not_processed),
            "numbersNotProcessed": str(not_processed),
            "failedFilePath": file_url,
            "transactionId": tx.id,
            "status": status,
            "message": message,
            "startDateTime": started.strftime(PROVIDER_TIME),
            "endDateTime": datetime.now(KOLKATA).strftime(PROVIDER_TIME),
        }
        return self._make_callbacks(tx, settings)

    @staticmethod
    def _map_fits(tx: Transaction, settings: Settings) -> bool:
        """The whole upload fails when the map lacks PhoneNumber, differs from the campaign's, or a row's width
        differs from the map's (the provider's page: three documented Fail cases)."""
        if "PhoneNumber" not in tx.map:
            return False
        if settings.map_match == "exact":
            same = tx.map == tx.campaign.map
        else:
            same = sorted(tx.map) == sorted(tx.campaign.map)
        return same and all(len(row) == len(tx.map) for row in tx.rows)

    def _add_rows(self, tx: Transaction, settings: Settings) -> list[tuple[int, list, str]]:
        """Check each row and add the good ones; returns (index, row, reason) for the others."""
        campaign = tx.campaign
        dnd = {_national(number) for number in settings.dnd}
        phone_at = tx.map.index("PhoneNumber")
        # This upload's numbers join the campaign's only at the end, so "already in the campaign" means before
        # this upload; numbers repeated inside the upload are caught with `added`.
        added: set[str] = set()
        failed = []
        for index, row in enumerate(tx.rows):
            phone = _text(row[phone_at]).strip()
            reason = self._row_reason(tx.map, row, phone, dnd, settings)
            if reason is None and self._is_duplicate(tx, phone, added):
                reason = REASON_DUPLICATE
            if reason is not None:
                failed.append((index, row, reason))
                continue
            added.add(phone)
            campaign.leads.append((tx.id, tx.map, row))
        campaign.phones |= added
        return failed

    @staticmethod
    def _row_reason(column_map: list[str], row: list, phone: str, dnd: set[str], settings: Settings) -> str | None:
        values = dict(zip(column_map, row, strict=True))
        if not phone:
            return REASON_PHONE_EMPTY
        if not PHONE.fullmatch(phone):
            return REASON_PHONE_INVALID
        # contract, Limits: "2000 characters per row including all headers": each header plus its cell's text.
        if sum(len(header) + len(_text(value)) for header, value in values.items()) > settings.max_row_chars:
            return REASON_ROW_TOO_LONG
        if "Name" in values and not NAME.fullmatch(_text(values["Name"])):
            return REASON_NAME
        if "Priority" in values:
            priority = _text(values["Priority"]).strip()
            if priority:
                if not (PRIORITY.fullmatch(priority) and 1 <= int(priority) <= 99):
                    return REASON_PRIORITY
            elif settings.empty_priority_fails:
                return REASON_PRIORITY
        if _national(phone) in dnd:
            return REASON_DND
        return None

    @staticmethod
    def _is_duplicate(tx: Transaction, phone: str, added: set[str]) -> bool:
        """contract, Request: isDelete skips numbers the campaign already holds; checkDuplicate also keeps only
        the first of a number repeated in the upload; when both are sent only isDelete counts. Numbers compare
        as sent (after trimming): a client that writes one number two ways gets it twice, as it would there."""
        if tx.is_delete:
            return phone in tx.campaign.phones
        if tx.check_duplicate:
            return phone in tx.campaign.phones or phone in added
        return False

    def _store_failed_file(self, tx: Transaction, failed: list[tuple[int, list, str]], settings: Settings) -> str:
        """The rows not added, with the request's headers and a Reason column, behind a pre-signed-style link
        (contract: "a pre-signed URL, valid for 24 hours"; its format is inferred)."""
        table = [[*tx.map, "Reason"], *([*map(_text, row), reason] for _, row, reason in failed)]
        if settings.failed_file_format == "xlsx":
            content = _xlsx(table)
        else:
            out = io.StringIO()
            csv.writer(out).writerows(table)
            content = out.getvalue().encode()
        name = f"{secrets.token_hex(16)}.{settings.failed_file_format}"
        self._files[name] = (FILE_FORMATS[settings.failed_file_format], content)
        expires = str(int(time.time() + settings.failed_file_ttl))  # whole seconds; a TTL of 0 is expired at once
        query = urlencode({"expires": expires, "signature": self._sign(name, expires)})
        return f"{tx.file_base_url}/files/{name}?{query}"

    def _sign(self, name: str, expires: str) -> str:
        return hmac.new(self._secret, f"{name}:{expires}".encode(), hashlib.sha256).hexdigest()

    def failed_file(self, name: str, query: str) -> tuple[int, str, bytes]:
        """(status, content type, body) for a failed-file link, answered like an object store: 404 for an unknown
        file, 403 for a bad signature or a link past its expiry."""
        params = parse_qs(query)
        expires, signature = params.get("expires", [""])[0], params.get("signature", [""])[0]
        with self._lock:
            stored = self._files.get(name)
        if stored is None:
            return _store_error(404, "NoSuchKey", "The specified key does not exist.")
        if not expires.isdigit() or not hmac.compare_digest(self._sign(name, expires), signature):
            return _store_error(403, "SignatureDoesNotMatch", "The request signature does not match.")
        if time.time() >= int(expires):
            return _store_error(403, "AccessDenied", "Request has expired")
        return 200, *stored

    # --- Callbacks --------------------------------------------------------------------------------------------

    def _make_callbacks(self, tx: Transaction, settings: Settings) -> list[Callback]:
        if not tx.callback_url:
            return []
        data = tx.result
        if settings.callback_padding:
            data = {key: f" {value} " for key, value in data.items()}
        content_type, body = _callback_body(data, settings.callback_shape)
        made = [
            Callback(
                id=len(self._callbacks) + copy,
                transaction_id=tx.id,
                url=tx.callback_url,
                shape=settings.callback_shape,
                content_type=content_type,
                body=body,
                copy=copy,
                due=time.monotonic() + settings.callback_delay,
            )
            for copy in range(1, settings.duplicate_callbacks + 1)
        ]
        self._callbacks.extend(made)
        return made

    def deliver(self, callback: Callback, generation: int) -> None:
        """POST one callback unless another thread took it or a reset forgot it. Nothing documents the
        provider's retries; we try again after a connection error or a 5xx, 1 + callback_retries tries in all,
        and record each try."""
        with self._lock:
            if generation != self._generation or callback.state != "waiting":
                return
            callback.state, settings = "sending", self.settings
            self._sending += 1
        answered = False
        try:
            for attempt in range(settings.callback_retries + 1):
                if attempt and self._stopping.wait(settings.callback_retry_delay):
                    break
                status, error = _post_callback(callback, settings.callback_timeout)
                answered = error is None and status < 500
                with self._lock:
                    callback.tries.append({"at": _now_text(), "status": status, "error": error})
                if answered:
                    break
        finally:
            with self._lock:
                callback.state = "answered" if answered else "failed"
                self._sending -= 1
                self._lock.notify_all()

    def _deliver_when_due(self, callback: Callback, generation: int) -> None:
        if not self._stopping.wait(max(0.0, callback.due - time.monotonic())):
            self.deliver(callback, generation)

    def _work(self) -> None:
        """The queue worker: requests in arrival order, each no earlier than process_delay after it arrived."""
        while True:
            with self._lock:
                while not self._stopping.is_set():
                    wait = self._queue[0].due - time.monotonic() if self._queue else None
                    if wait is not None and wait <= 0:
                        break
                    self._lock.wait(wait)
                if self._stopping.is_set():
                    return
                callbacks = self._process(self._queue.popleft())
                generation = self._generation
            for callback in callbacks:
                threading.Thread(target=self._deliver_when_due, args=(callback, generation), daemon=True).start()


def _store_error(status: int, code: str, message: str) -> tuple[int, str, bytes]:
    body = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    return status, "application/xml", body.encode()


def _callback_body(data: dict, shape: str) -> tuple[str, str]:
    """(content type, body) of a callback (contract: receivers must accept a JSON object, a JSON string and a
    form field data=<json>). "json-string-unescaped" is the page's own sample byte for byte: a JSON object
    pasted inside quotes without escaping, which is not valid JSON."""
    text = json.dumps(data)
    if shape == "json-object":
        return "application/json", json.dumps({"data": data})
    if shape == "json-string":
        return "application/json", json.dumps({"data": text})
    if shape == "json-string-unescaped":
        return "application/json", '{"data":"' + json.dumps(data, separators=(",", ":")) + '"}'
    return "application/x-www-form-urlencoded", urlencode({"data": text})


# Callbacks go straight to the receiver: a proxy from the environment is not the provider's.
_CALLBACK_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _post_callback(callback: Callback, timeout: float) -> tuple[int | None, str | None]:
    """(HTTP status, None) when the receiver answered, else (None, the error)."""
    request = urllib.request.Request(
        callback.url,
        data=callback.body.encode(),
        method="POST",
        headers={"Content-Type": callback.content_type, "User-Agent": USER_AGENT},
    )
    try:
        with _CALLBACK_OPENER.open(request, timeout=timeout) as response:
            response.read()
            return response.status, None
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code, None
    except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError is an OSError
        return None, f"{type(exc).__name__}: {exc}"


def _xlsx(table: list[list[str]]) -> bytes:
    from openpyxl import Workbook  # only for --failed-file-format xlsx: the emulator is stdlib-only otherwise

    book = Workbook(write_only=True)
    sheet = book.create_sheet("Failed")
    for row in table:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


# --- HTTP -------------------------------------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive, so a client's connection reuse (and a dropped connection) is exercised."""

    protocol_version = "HTTP/1.1"
    server_version = "cloudagent-emulator"
    sys_version = ""
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle and delayed ACKs add 40 ms to each answer.
    disable_nagle_algorithm = True

    @property
    def emulator(self) -> Emulator:
        return self.server.emulator

    def do_POST(self) -> None:
        path, _, _ = self.path.partition("?")
        body = self._read_body()
        if body is None:
            return
        if path == API_PATH:
            self._api(body)
        elif path.startswith("/_emulator/"):
            self._control(path, body)
        else:
            self._send_json(404, {"error": f"no such path: {path}"})

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        if path == "/_emulator/inspect":
            sections = [name for name in parse_qs(query).get("sections", [""])[0].split(",") if name]
            try:
                self._send(200, "application/json", self.emulator.inspect_json(sections))
            except ValueError as exc:
                self._send_json(400, {"error": str(exc)})
        elif path.startswith("/files/"):
            self._send(*self.emulator.failed_file(path.removeprefix("/files/"), query))
        else:
            self._send_json(404, {"error": f"no such path: {path}"})

    def _api(self, body: bytes) -> None:
        content_type = self.headers.get("Content-Type", "")
        host, port = self.server.server_address[:2]
        base_url = f"http://{self.headers.get('Host') or f'{host}:{port}'}"
        reply = self.emulator.add_bulk_data(parse_fields(content_type, body), content_type, base_url)
        for callback in reply.callbacks_first:
            self.emulator.deliver(callback, reply.generation)
        if reply.delay:
            self.emulator.pause(reply.delay)
        if reply.drop:  # the request counted and was queued; the client only loses the answer
            self.close_connection = True
            return
        self._send(reply.status, reply.content_type, reply.body)

    def _control(self, path: str, body: bytes) -> None:
        emulator = self.emulator
        try:
            document = json.loads(body or b"{}")
            if not isinstance(document, dict):
                raise ValueError("the body must be a JSON object")
            if path == "/_emulator/config":
                result = emulator.configure(document)
            elif path == "/_emulator/reset":
                result = emulator.reset()
            elif path == "/_emulator/fault":
                result = emulator.force_fault(document.get("fault"), document.get("count", 1))
            elif path == "/_emulator/process-now":
                result = emulator.process_now()
            else:
                self._send_json(404, {"error": f"no such path: {path}"})
                return
        except ValueError as exc:
            self._send_json(400, {"error": str(exc)})
            return
        self._send_json(200, result)

    def _read_body(self) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES or "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            self._send_json(400, {"error": f"send a Content-Length of at most {MAX_BODY_BYTES} bytes"})
            return None
        return self.rfile.read(length)

    def _send_json(self, status: int, document: object) -> None:
        self._send(status, "application/json", json.dumps(document).encode())

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code="-", size="-") -> None:
        # The API calls only: inspect polls and control calls would bury them (GET /_emulator/inspect has it all).
        if self.path.startswith(API_PATH):
            super().log_request(code, size)


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True  # a hung client must not keep the process alive at shutdown
    request_queue_size = 128  # bursts of concurrent clients (tests, benchmarks) must not wait on SYN retries

    def __init__(self, address: tuple[str, int], emulator: Emulator):
        super().__init__(address, Handler)
        self.emulator = emulator

    def handle_error(self, request, client_address) -> None:
        # A client that hung up (a timed-out slow answer) is the client's business, not an emulator error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


# --- Configuration and entry points -----------------------------------------------------------------------------


def load_config(path: Path | str) -> tuple[list[Account], Settings]:
    """Accounts and settings from a JSON file shaped {"accounts": [{"userName", "apiKey", "campaigns": [{"name",
    "type": "outbound"|"inbound", "map": [...]}]}], "dnd": [...], "settings": {...}}."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
        accounts = []
        for entry in document["accounts"]:
            campaigns = {}
            for item in entry.get("campaigns", []):
                kind = item.get("type", "outbound")
                if kind not in ("outbound", "inbound"):
                    raise ValueError(f"campaign {item['name']}: type must be outbound or inbound")
                if kind == "outbound" and "PhoneNumber" not in item.get("map", []):
                    raise ValueError(f"campaign {item['name']}: an outbound campaign needs a map with PhoneNumber")
                campaigns[item["name"]] = Campaign(name=item["name"], kind=kind, map=list(item.get("map", [])))
            accounts.append(Account(user_name=entry["userName"], api_key=entry["apiKey"], campaigns=campaigns))
        if not accounts:
            raise ValueError("no accounts")
        settings = Settings().updated({**document.get("settings", {}), "dnd": document.get("dnd", [])})
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"config {path}: {type(exc).__name__}: {exc}") from exc
    return accounts, settings


def read_dnd(path: Path | str) -> tuple[str, ...]:
    """DND numbers, one a line; blank lines and # comments are skipped."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return tuple(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Every flag, built from Settings; shared with `manage.py cloudagent_emulator`. Settings flags default to
    SUPPRESS so that only the flags given override the config file's "settings"."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8900, help="port to bind; 0 picks a free one (default: 8900)")
    parser.add_argument("--config", type=Path, help=f"accounts and campaigns, JSON (default: {DEFAULT_CONFIG.name})")
    parser.add_argument(
        "--dnd", type=Path, metavar="FILE", dest="dnd_file", help="DND numbers, one a line, added to the config's"
    )
    defaults = Settings()
    for item in fields(Settings):
        if item.name == "dnd":
            continue
        default = getattr(defaults, item.name)
        flag = "--" + item.name.replace("_", "-")
        help_text = f"{item.metadata['help']} (default: {default})"
        if isinstance(default, bool):
            action = argparse.BooleanOptionalAction
            parser.add_argument(flag, action=action, default=argparse.SUPPRESS, help=help_text)
        else:
            parser.add_argument(
                flag, type=type(default), choices=item.metadata["choices"], default=argparse.SUPPRESS, help=help_text
            )


def create_server(options: Mapping[str, object]) -> EmulatorServer:
    """A bound server from parsed flags (argparse's or Django's); ValueError or OSError says what is wrong."""
    accounts, settings = load_config(options.get("config") or DEFAULT_CONFIG)
    settings = settings.updated({name: options[name] for name in SETTING_NAMES if name in options})
    if options.get("dnd_file"):
        settings = replace(settings, dnd=settings.dnd + read_dnd(options["dnd_file"]))
    address = (options.get("host") or "127.0.0.1", int(options.get("port", 8900)))
    return EmulatorServer(address, Emulator(accounts, settings))


def serve(server: EmulatorServer) -> None:
    """Serve until SIGTERM or SIGINT, then stop the worker and close the socket."""

    def stop(signum, frame):
        # shutdown() waits for serve_forever() to return, so it must not run on serve_forever's own thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.emulator.start()
    host, port = server.server_address[:2]
    print(f"cloudagent-emulator listening on http://{host}:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.emulator.stop()
        server.server_close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m uploads.emulator", description=__doc__.splitlines()[0])
    add_arguments(parser)
    options = vars(parser.parse_args(argv))
    try:
        server = create_server(options)
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    serve(server)


if __name__ == "__main__":
    sys.exit(main())
