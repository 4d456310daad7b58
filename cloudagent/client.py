"""HTTP client for CloudAgent's "Add Campaign Bulk Data (V4)" API, and the download of its failed-rows file.

Pure Python and requests: it knows nothing of the ORM, RQ or Django settings, so the push, the callback's
failed-file job, the tests and a shell all use it the same way. The provider's behaviour it relies on is written
down in docs/cloudagent-contract.md (cited below by section). Both requests go out on the client's one
`requests.Session`, with the same User-Agent.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import ssl
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from urllib.parse import quote, quote_plus, urljoin, urlsplit

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

logger = logging.getLogger("leadhub.cloudagent")

ENDPOINT_PATH = "/cloudAgentRestAPI/index.php/AddCampaignBulkDataV4/addBulkData/format/json"
USER_AGENT = f"leadhub/{version('leadhub')} (+CloudAgent bulk client)"
BODY_LIMIT = 2000  # characters of a response body kept on an error
REDACTED = "[redacted]"
FAILED_FILE_REDIRECT_HOPS = 3

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
            )
        except requests.RequestException as err:
            raise TransientError(
                self._redact(f"{_describe_transport_error(err)} (POST to {self.base_url})"),
                ambiguous=_may_have_been_sent(err),
            ) from err
        return self._parse(response)

    def _parse(self, response: requests.Response) -> AddBulkDataResult:
        status = response.status_code
        body = _truncate(self._redact(response.text))
        answer = _json_object(response.content)

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
        if 200 <= status < 300 and _is_json(response.content):
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

    def failed_file_download(
        self, url: str, *, allowed_hosts: Iterable[str], max_bytes: int, timeout_seconds: float
    ) -> bytes:
        """GET a callback's pre-signed failed-rows URL (docs/cloudagent-contract.md, Failed-rows file) on this
        client's session: a timeout on every wait and on the whole download, a size cap, and every redirect hop
        checked against `allowed_hosts` like the URL itself, so a forged callback or an allowed host's redirect
        cannot make a worker fetch an address inside our network.

        Raises FailedFileTemporarilyUnavailable for a transport error, a 5xx, 408/425/429 or a slow download
        (worth another try while the URL lives), FailedFileUnavailable for anything retrying cannot change."""
        problem = failed_file_url_problem(url, allowed_hosts=allowed_hosts)
        if problem:
            raise FailedFileUnavailable(f"failed file URL refused: {problem}")
        deadline = time.monotonic() + timeout_seconds
        try:
            with self._get_checking_every_hop(url, allowed_hosts, timeout_seconds) as response:
                status = response.status_code
                if status in (408, 425, 429) or status >= 500:
                    raise FailedFileTemporarilyUnavailable(f"the failed file server answered HTTP {status}")
                if status != 200:
                    raise FailedFileUnavailable(f"the failed file server answered HTTP {status} (expired or refused)")
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise FailedFileUnavailable(f"the failed file is {declared} bytes, over the {max_bytes}-byte cap")
                chunks, size = [], 0
                for chunk in response.iter_content(64 * 1024):
                    size += len(chunk)
                    if size > max_bytes:
                        raise FailedFileUnavailable(f"the failed file is over the {max_bytes}-byte cap")
                    if time.monotonic() > deadline:
                        raise FailedFileTemporarilyUnavailable(f"the download took over {timeout_seconds} s")
                    chunks.append(chunk)
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            raise FailedFileTemporarilyUnavailable(f"the failed file could not be downloaded: {exc}") from exc
        except (requests.RequestException, ValueError) as exc:  # ValueError: a URL requests cannot even encode
            raise FailedFileUnavailable(f"the failed file could not be downloaded: {exc}") from exc
        return b"".join(chunks)

    def _get_checking_every_hop(self, url: str, allowed_hosts: Iterable[str], seconds: float) -> requests.Response:
        """GET, following at most FAILED_FILE_REDIRECT_HOPS redirects, each to a URL failed_file_url_problem
        accepts."""
        for _ in range(FAILED_FILE_REDIRECT_HOPS + 1):
            response = self.session.get(
                url,
                stream=True,
                timeout=(min(seconds, 10), seconds),
                headers={"User-Agent": USER_AGENT},
                allow_redirects=False,
            )
            if not response.is_redirect:
                return response
            response.close()
            url = urljoin(url, response.headers["Location"])
            problem = failed_file_url_problem(url, allowed_hosts=allowed_hosts)
            if problem:
                raise FailedFileUnavailable(f"the failed file redirects to a URL refused: {problem}")
        raise FailedFileUnavailable(f"the failed file redirects more than {FAILED_FILE_REDIRECT_HOPS} times")


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


def failed_file_url_problem(url: str, *, allowed_hosts: Iterable[str]) -> str:
    """Why a failedFilePath cannot be fetched ("" when it can): only http(s) URLs to a host, ever, and only to
    `allowed_hosts` when it names any."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "the URL cannot be parsed"
    if parts.scheme.lower() not in ("http", "https"):
        return f"scheme {parts.scheme or '(none)'!r} is not http(s)"
    if not parts.hostname:
        return "the URL names no host"
    allowed = list(allowed_hosts)
    host = parts.hostname.lower()
    if allowed and not any(_host_matches(host, name) for name in allowed):
        return f"host {host!r} is not in CLOUDAGENT_FAILED_FILE_HOSTS"
    return ""


def _host_matches(host: str, allowed: str) -> bool:
    """A name covers its subdomains; an address only itself (127.0.0.1 is no "subdomain" of 0.0.1)."""
    if host == allowed:
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host.endswith("." + allowed)
    return False
