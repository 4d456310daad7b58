"""HTTP client for CloudAgent's "Add Campaign Bulk Data (V4)" API, and the download of its failed-rows file.

Pure Python and requests: it knows nothing of the ORM, RQ or Django settings, so the push, the callback's
failed-file job, the tests and a shell all use it the same way. The provider's behaviour it relies on is written
down in docs/cloudagent-contract.md (cited below by section). The API requests go out on the client's
`requests.Session`; the failed-rows download, whose URL comes from outside, through cloudagent.safe_http; both
with the same User-Agent.
"""

from __future__ import annotations

import json
import logging
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from importlib.metadata import version
from urllib.parse import quote, quote_plus, urlsplit

import requests
from urllib3.exceptions import ConnectTimeoutError

from cloudagent.errors import (
    AuthenticationError,
    CampaignError,
    CloudAgentError,
    FailedFileTemporarilyUnavailable,
    FailedFileUnavailable,
    InvalidDataError,
    RateLimitedError,
    TransientError,
    UnexpectedResponseError,
)
from cloudagent.rules import check_batch
from cloudagent.safe_http import FetchFailed, FetchPolicy, FetchRefused, fetch, url_refusal

logger = logging.getLogger("leadhub.cloudagent")

ENDPOINT_PATH = "/cloudAgentRestAPI/index.php/AddCampaignBulkDataV4/addBulkData/format/json"
USER_AGENT = f"leadhub/{version('leadhub')} (+CloudAgent bulk client)"
BODY_LIMIT = 2000  # characters of a response body kept on an error
# CloudAgent answers with a few hundred bytes of JSON; a bigger answer is not CloudAgent's, and is not read whole.
MAX_ANSWER_BYTES = 1024 * 1024
REDACTED = "[redacted]"

# The documented synchronous answers (docs/cloudagent-contract.md, Synchronous answers), by normalised message.
_AUTH_MESSAGES = {"invalid username or apikey", "apikey should not be empty", "username should not be empty"}
_CAMPAIGN_MESSAGES = {"invalid campaign name", "campaignname should not be empty"}
_INVALID_DATA_MESSAGES = {"please provide valid data"}
_RATE_LIMIT_MESSAGES = {"too many requests and failed to add data to queue"}
_REFUSED_STATUSES = {"error", "failure", "fail", "failed"}


# --- Client -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AddBulkDataResult:
    """CloudAgent queued the request; the outcome arrives later, on the callback, under `transaction_id`."""

    transaction_id: str
    message: str
    raw: dict


class CloudAgentClient:
    """One per account: CloudAgent's rate limit (5 requests a minute) applies per account, and pacing is the
    caller's job (leadhub paces in uploads/ratelimit.py); the client sends one request per call, never retrying."""

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
        check_batch(column_map, rows)
        # docs/cloudagent-contract.md, Request: all fields in a form-encoded body (apiKey is not a header here),
        # bulkData as a JSON string, booleans as the strings "true"/"false".
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

        # CloudAgent's documented answers are all HTTP 200 (inferred, docs/cloudagent-contract.md): recognise them by
        # body whatever the status, so a CloudAgent that starts sending e.g. 400 with them is still understood.
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

    def failed_file_download(self, url: str, *, policy: FetchPolicy) -> bytes:
        """GET a callback's pre-signed failed-rows URL (docs/cloudagent-contract.md, Failed-rows file) with this
        client's User-Agent. The URL comes from a callback anyone could forge, so it goes through safe_http, not
        the API session: the host resolved once and refused if internal, the connection pinned to the address
        checked, every redirect checked the same way, a size cap and a deadline (`policy`).

        Raises FailedFileTemporarilyUnavailable for a transport error, a 5xx, 408/425/429 or a slow download
        (worth another try while the URL lives), FailedFileUnavailable for anything retrying cannot change."""
        try:
            result = fetch(url, policy=replace(policy, user_agent=USER_AGENT))
        except FetchRefused as exc:
            raise FailedFileUnavailable(f"failed file URL refused: {exc}") from exc
        except FetchFailed as exc:
            raise FailedFileTemporarilyUnavailable(f"the failed file could not be downloaded: {exc}") from exc
        if result.status in (408, 425, 429) or result.status >= 500:
            raise FailedFileTemporarilyUnavailable(f"the failed file server answered HTTP {result.status}")
        if result.status != 200:
            raise FailedFileUnavailable(f"the failed file server answered HTTP {result.status} (expired or refused)")
        return result.body


def _flag(value: bool) -> str:
    return "true" if value else "false"


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


def failed_file_url_problem(url: str, *, policy: FetchPolicy) -> str:
    """Why a failedFilePath will not be fetched ("" when it may be), judged on the URL alone when the callback
    arrives; the download checks the addresses too."""
    return url_refusal(url, policy)
