"""HTTP client for CloudAgent's "Add Campaign Bulk Data (V4)" API.

Pure Python and requests: it knows nothing of the ORM, RQ or Django settings, so the push jobs, the emulator's
tests and a shell can all use it the same way. The provider's behaviour it relies on is written down in
shared/cloudagent/contract.md (cited below as "contract.md, <section>").

Every failure is a `CloudAgentError` subclass that says two things the caller needs to decide what to do next:
`retryable` (sending the same request again later can succeed) and `ambiguous` (CloudAgent may have queued the
request although we have no transactionId: a re-send must use checkDuplicate, or a person must check first).
"""

from __future__ import annotations

import json
import logging
import re
import ssl
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from urllib.parse import quote, quote_plus, urlsplit

import requests
from urllib3.exceptions import ConnectTimeoutError

import leadhub

logger = logging.getLogger("leadhub.cloudagent")

ENDPOINT_PATH = "/cloudAgentRestAPI/index.php/AddCampaignBulkDataV4/addBulkData/format/json"
MAX_ROWS_PER_REQUEST = 500  # contract.md, Limits
MAX_ROW_CHARS = 2000  # contract.md, Limits: "2000 characters per row including all headers"
STANDARD_HEADERS = ("PhoneNumber", "Name", "Priority", "ExpiryDate", "AgentId", "skill")

USER_AGENT = f"leadhub/{leadhub.__version__} (+CloudAgent bulk client)"
BODY_LIMIT = 2000  # characters of a response body kept on an error
# CloudAgent answers with a few hundred bytes of JSON; a bigger answer is not CloudAgent's, and is not read whole.
MAX_ANSWER_BYTES = 1024 * 1024
REDACTED = "[redacted]"

# contract.md, Limits. CloudAgent's check is not published; we read "letters" and "digits" as ASCII, the
# strict reading (campaigns/normalize.py folds names to ASCII for the same reason).
NAME_REFUSED = re.compile(r"[^A-Za-z0-9_ ().+$%\-:]")
PRIORITY_RANGE = range(1, 100)  # contract.md, Limits: 1-99, documented on the single-lead sibling API
# contract.md, Limits: YYYY-MM-DD; an older sibling also shows YYYY-MM-DD HH:MM:SS.
EXPIRY_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}( \d{2}:\d{2}:\d{2})?")

# The documented synchronous answers (contract.md, Synchronous answers), keyed by the normalised message.
_AUTH_MESSAGES = {"invalid username or apikey", "apikey should not be empty", "username should not be empty"}
_CAMPAIGN_MESSAGES = {"invalid campaign name", "campaignname should not be empty"}
_INVALID_DATA_MESSAGES = {"please provide valid data"}
_RATE_LIMIT_MESSAGES = {"too many requests and failed to add data to queue"}
_REFUSED_STATUSES = {"error", "failure", "fail", "failed"}


# --- Errors -------------------------------------------------------------------------------------------------


class CloudAgentError(Exception):
    """Base of every error the client raises after it has started a request.

    `message` is CloudAgent's own message when it sent one, else ours; `status_code` and `body` (truncated)
    keep the HTTP answer when there was one. The API key never appears in any of them: the client redacts it
    from everything that comes back before building the error.
    """

    retryable = False
    ambiguous = False

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        body: str | None = None,
        retryable: bool | None = None,
        ambiguous: bool | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.body = body
        if retryable is not None:
            self.retryable = retryable
        if ambiguous is not None:
            self.ambiguous = ambiguous

    def __str__(self) -> str:
        if self.status_code is None:
            return self.message
        return f"{self.message} (HTTP {self.status_code})"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, status_code={self.status_code!r}, "
            f"retryable={self.retryable!r}, ambiguous={self.ambiguous!r})"
        )

    def __reduce__(self):
        # RQ and multiprocessing pickle exceptions; keep the attributes, not just the message.
        state = {
            "status_code": self.status_code,
            "body": self.body,
            "retryable": self.retryable,
            "ambiguous": self.ambiguous,
        }
        return (_rebuild_error, (type(self), self.message, state))


def _rebuild_error(cls, message, state):
    return cls(message, **state)


class AuthenticationError(CloudAgentError):
    """CloudAgent refused the account's credentials: "Invalid userName or apiKey", "apiKey should not be
    empty", "userName should not be empty". Nothing was queued; retrying cannot help until the account is
    fixed."""


class CampaignError(CloudAgentError):
    """CloudAgent refused the campaign: "Invalid Campaign Name" (unknown, or an inbound campaign) or
    "campaignName should not be empty". Nothing was queued."""


class InvalidDataError(CloudAgentError):
    """CloudAgent answered "Please provide valid data" (status "failure"): bulkData was missing, empty or
    malformed. Nothing was queued. Rows that merely do not match the campaign's map are *accepted* and fail
    later, in the callback."""


class RateLimitedError(CloudAgentError):
    """CloudAgent answered "too many Requests and failed to add Data to queue" (more than 5 requests a
    minute), or something in front of it answered HTTP 429. The answer says the data was *not* queued: send
    it again later, unchanged. It is the limiter's miss, not a failure of the batch."""

    retryable = True


class TransientError(CloudAgentError):
    """The request did not get a usable answer; sending it again later can succeed.

    `ambiguous` says whether CloudAgent may already have queued it, and follows one rule: the request is
    ambiguous once its bytes may have reached the server and no answer told us what became of them.

    - Connection refused, connect timeout, DNS failure, a certificate that does not verify, a proxy we could
      not reach: the request never left us -> not ambiguous. Other TLS errors reach us the same way whether they
      struck in the handshake or in the middle of the answer -> ambiguous.
    - Read timeout, or the connection dropped after the request was sent: CloudAgent may have queued it and
      lost only the answer -> ambiguous.
    - HTTP 5xx: ambiguous. A 502/504 comes from a proxy that gave up waiting for a CloudAgent which may still
      finish the upload, and a 500 from the PHP application can happen after the data was put on the queue
      (while the answer was being built). Nothing in the contract says a 5xx means "not queued".
    - HTTP 200 with a body that is not JSON: ambiguous. The answer was cut short, or PHP printed a notice in
      front of the JSON; either can come after the data was queued.
    - Any other status (3xx, 4xx other than 429): not ambiguous. By HTTP's own rules the server did not act on
      the request, and CloudAgent's documented answers (all HTTP 200) are recognised by body before the status
      is looked at. Redirects are never followed: requests would turn the POST into a GET and drop the body.
    """

    retryable = True


class UnexpectedResponseError(CloudAgentError):
    """JSON that we do not recognise, e.g. an error with an undocumented message, or "success" without a
    transactionId. Not retryable: a person should look at the answer (`body`) before anything is sent again.
    Ambiguous unless CloudAgent said "error"/"failure": an answer we cannot read may still mean "queued"."""


# --- Client -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AddBulkDataResult:
    """CloudAgent queued the request; the outcome arrives later, on the callback, under `transaction_id`."""

    transaction_id: str
    message: str
    raw: dict


class CloudAgentClient:
    """One per account: CloudAgent's rate limit (5 requests a minute) applies per account, and pacing is the
    caller's job (uploads/ratelimit.py); the client sends exactly one request per call and never retries."""

    def __init__(
        self,
        *,
        base_url: str,
        user_name: str,
        api_key: str,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        session: requests.Session | None = None,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ):
        parts = urlsplit(base_url or "")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + ENDPOINT_PATH
        self.user_name = user_name
        self._api_key = api_key
        # requests' read timeout bounds each wait for bytes, not the whole answer; CloudAgent answers small.
        self.timeout = (connect_timeout, read_timeout)
        self.max_answer_bytes = max_answer_bytes
        self._owns_session = session is None
        self.session = session if session is not None else requests.Session()

    @classmethod
    def for_account(cls, account, **kwargs) -> CloudAgentClient:
        """Build a client from anything with `base_url`, `user_name` and `api_key` (a CloudAgentAccount)."""
        return cls(base_url=account.base_url, user_name=account.user_name, api_key=account.api_key, **kwargs)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.base_url} user_name={self.user_name!r}>"

    def __enter__(self) -> CloudAgentClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Close the session if the client made it; a session passed in belongs to the caller."""
        if self._owns_session:
            self.session.close()

    def add_bulk_data(
        self,
        *,
        campaign_name: str,
        column_map: Sequence[str],
        rows: Sequence[Sequence],
        check_duplicate: bool = False,
        is_delete: bool = False,
        start: bool = False,
        callback_url: str | None = None,
    ) -> AddBulkDataResult:
        """Send one batch of rows to a campaign: one POST, never retried here.

        Refuses locally (ValueError, before any request, so no rate-limit slot is spent) what CloudAgent
        would refuse or fail later: more than MAX_ROWS_PER_REQUEST rows, a map without PhoneNumber or naming
        a header twice, a row whose width differs from the map. Rows go as given: build them with
        `build_rows`.
        """
        _check_batch(column_map, rows)
        # contract.md, Request: all fields in a form-encoded body (apiKey is not a header here), bulkData as a
        # JSON string, booleans as the strings "true"/"false".
        form = {
            "apiKey": self._api_key,
            "userName": self.user_name,
            "campaignName": campaign_name,
            "bulkData": json.dumps({"map": list(column_map), "data": [list(row) for row in rows]}),
            "checkDuplicate": _flag(check_duplicate),
            "isDelete": _flag(is_delete),
        }
        if start:
            form["action"] = "start"
        if callback_url:
            form["callBackUrl"] = callback_url

        started = time.monotonic()
        try:
            result = self._post(form)
        except CloudAgentError as exc:
            self._log(logging.WARNING, campaign_name, len(rows), f"{type(exc).__name__}: {exc}", started)
            raise
        self._log(logging.INFO, campaign_name, len(rows), f"queued transactionId={result.transaction_id}", started)
        return result

    def _post(self, form: dict) -> AddBulkDataResult:
        try:
            response = self.session.post(
                self.url,
                data=form,
                headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
                timeout=self.timeout,
                allow_redirects=False,
                stream=True,
            )
            with response:
                content = self._answer_read(response)
        except requests.RequestException as err:
            raise TransientError(
                self._redact(f"{_describe_transport_error(err)} (POST to {self.base_url})"),
                ambiguous=_may_have_been_sent(err),
            ) from err
        return self._parse(response.status_code, content, response.encoding)

    def _answer_read(self, response: requests.Response) -> bytes:
        """The body up to max_answer_bytes. Over it, the answer came from something other than CloudAgent's API
        (a proxy's page, a misconfigured base URL): CloudAgent may still have queued the request."""
        chunks, size = [], 0
        for chunk in response.iter_content(64 * 1024):
            size += len(chunk)
            if size > self.max_answer_bytes:
                raise UnexpectedResponseError(
                    f"the answer is over {self.max_answer_bytes} bytes; it was not read",
                    status_code=response.status_code,
                    ambiguous=True,
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _parse(self, status: int, content: bytes, encoding: str | None) -> AddBulkDataResult:
        body = _truncate(self._redact(content.decode(encoding or "utf-8", "replace")))
        answer = _json_object(content)

        # CloudAgent's documented answers are all HTTP 200 (inferred, contract.md): recognise them by body
        # whatever the status, so a CloudAgent that starts sending e.g. 400 with them is still understood.
        if answer is not None:
            provider_status = str(answer.get("status", "")).strip().lower()
            message = self._redact(str(answer.get("message", "")).strip())
            key = " ".join(message.lower().split())
            transaction_id = str(answer.get("transactionId") or "").strip()
            if provider_status == "success" and transaction_id:
                return AddBulkDataResult(
                    transaction_id=transaction_id, message=message, raw=self._redact_values(answer)
                )
            for messages, error_class in (
                (_AUTH_MESSAGES, AuthenticationError),
                (_CAMPAIGN_MESSAGES, CampaignError),
                (_INVALID_DATA_MESSAGES, InvalidDataError),
                (_RATE_LIMIT_MESSAGES, RateLimitedError),
            ):
                if key in messages:
                    raise error_class(message, status_code=status, body=body)
            if 200 <= status < 300:
                refused = provider_status in _REFUSED_STATUSES
                raise UnexpectedResponseError(
                    message or f"unrecognised answer from CloudAgent (status {provider_status or 'missing'!r})",
                    status_code=status,
                    body=body,
                    ambiguous=not refused,
                )

        if status == 429:
            raise RateLimitedError("HTTP 429 Too Many Requests", status_code=status, body=body)
        if status >= 500:
            raise TransientError("CloudAgent server error", status_code=status, body=body, ambiguous=True)
        if 200 <= status < 300 and _is_json(content):
            raise UnexpectedResponseError(
                "CloudAgent's answer is JSON but not an object", status_code=status, body=body, ambiguous=True
            )
        if 200 <= status < 300:
            raise TransientError("CloudAgent's answer is not JSON", status_code=status, body=body, ambiguous=True)
        raise TransientError("unexpected HTTP status from CloudAgent", status_code=status, body=body, ambiguous=False)

    def _redact(self, text: str) -> str:
        """Remove the API key from text that came back to us, in case a server or proxy echoes the request."""
        key = self._api_key
        if not key:
            return text
        for form in {key, quote_plus(key), quote(key, safe="")}:
            text = text.replace(form, REDACTED)
        return text

    def _redact_values(self, value):
        """`raw` is stored with the batch: keep the key out of it too."""
        if isinstance(value, str):
            return self._redact(value)
        if isinstance(value, dict):
            return {name: self._redact_values(item) for name, item in value.items()}
        if isinstance(value, list):
            return [self._redact_values(item) for item in value]
        return value

    def _log(self, level: int, campaign_name: str, rows: int, outcome: str, started: float) -> None:
        elapsed = time.monotonic() - started
        logger.log(
            level,
            "add_bulk_data campaign=%r rows=%d outcome=%s elapsed=%.3fs",
            campaign_name,
            rows,
            outcome,
            elapsed,
        )


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _check_batch(column_map: Sequence[str], rows: Sequence[Sequence]) -> None:
    _check_map(column_map)
    if len(rows) > MAX_ROWS_PER_REQUEST:
        raise ValueError(f"{len(rows)} rows in one request; CloudAgent takes at most {MAX_ROWS_PER_REQUEST}")
    width = len(column_map)
    for index, row in enumerate(rows):
        if len(row) != width:
            raise ValueError(f"row {index} has {len(row)} values for a map of {width} headers")


def _check_map(column_map: Sequence[str]) -> None:
    # contract.md, Request: a map without PhoneNumber is *accepted* and then fails whole in the callback, so
    # refuse it before it costs a rate-limit slot.
    if isinstance(column_map, str):
        raise ValueError("column_map is a sequence of header names, not a string")
    if "PhoneNumber" not in column_map:
        raise ValueError(f"column_map must contain PhoneNumber, got {list(column_map)!r}")
    if len(set(column_map)) != len(column_map):
        raise ValueError(f"column_map names a header twice: {list(column_map)!r}")


def _truncate(text: str) -> str:
    if len(text) <= BODY_LIMIT:
        return text
    return text[:BODY_LIMIT] + f"... [{len(text) - BODY_LIMIT} more characters]"


def _is_json(content: bytes) -> bool:
    try:
        json.loads(content)
    except ValueError:
        return False
    return True


def _json_object(content: bytes) -> dict | None:
    """The answer as a dict, or None. A JSON string holding an object is unwrapped once: the contract's
    callback sample shows CloudAgent double-encoding JSON, and the synchronous answer is shown quoted too."""
    try:
        value = json.loads(content)
        if isinstance(value, str):
            value = json.loads(value)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _may_have_been_sent(err: requests.RequestException) -> bool:
    """False only when the failure provably happened before the request left us (see TransientError)."""
    if isinstance(err, requests.ConnectTimeout | requests.exceptions.ProxyError):
        return False  # urllib3 raises ProxyError only before it has reached the proxy
    cause = err.args[0] if err.args else None
    reason = getattr(cause, "reason", None)  # urllib3's MaxRetryError carries the underlying failure
    if isinstance(err, requests.exceptions.SSLError):
        # Certificate verification happens in the handshake, before a byte of the request is written.
        return not (reason is not None and reason.args and isinstance(reason.args[0], ssl.SSLCertVerificationError))
    # NewConnectionError (refused, unreachable, DNS) is a ConnectTimeoutError in urllib3 2.
    return not isinstance(reason, ConnectTimeoutError)


def _describe_transport_error(err: requests.RequestException) -> str:
    cause = err.args[0] if err.args else err
    detail = getattr(cause, "reason", None) or cause  # urllib3's MaxRetryError wraps the real failure
    if isinstance(err, requests.ConnectTimeout):
        return f"connect timeout: {detail}"
    if isinstance(err, requests.ReadTimeout):
        return f"read timeout, the request was sent but no answer came in time: {detail}"
    if not _may_have_been_sent(err):
        return f"could not connect: {detail}"
    return f"connection lost after the request was sent: {type(err).__name__}: {detail}"


# --- Row building -------------------------------------------------------------------------------------------


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

    Local checks mirror the documented limits (contract.md, Limits), because CloudAgent would otherwise
    accept the batch and drop the row later, or fail the whole upload: PhoneNumber present and non-empty;
    Name only letters, digits, _, space and ( ) . + $ % - :; Priority a whole number 1-99; ExpiryDate, when
    given as text, YYYY-MM-DD (or YYYY-MM-DD HH:MM:SS); the row at most MAX_ROW_CHARS long (see
    `row_length`). A record that fails goes to `.rejected` with every reason it fails, never to `.rows`.

    A datetime's own date is used as it stands: the client does not know the caller's time zone.
    """
    _check_map(column_map)
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
    """The documented limit is "2000 characters per row including all headers" (contract.md, Limits).

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
        refused = list(dict.fromkeys(NAME_REFUSED.findall(text)))
        if refused:
            shown = " ".join(repr(char) for char in refused)
            return text, f"Name contains characters CloudAgent refuses: {shown}"
    if header == "ExpiryDate" and text.strip() and not isinstance(value, date):
        if not _is_expiry_text(text.strip()):
            return text, f"ExpiryDate {text!r} is not a date as YYYY-MM-DD"
    return text, None


def _priority(value: object) -> tuple[object, str | None]:
    """CloudAgent's documented example sends Priority as a JSON number; "supports only numeric value" is one
    of its per-lead reasons (contract.md, Related provider facts)."""
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


def _is_expiry_text(text: str) -> bool:
    if not EXPIRY_TEXT.fullmatch(text):
        return False
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True
