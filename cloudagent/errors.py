"""CloudAgent's typed errors: what went wrong talking to the provider, and what the caller may do next.

Every failure of a bulk upload request is a `CloudAgentError` that says two things: `retryable` (sending the same
request again later can succeed) and `ambiguous` (CloudAgent may have queued the request although we have no
transactionId: a re-send must use checkDuplicate, or a person must check first). See docs/cloudagent-contract.md,
"Synchronous answers".
"""

from __future__ import annotations


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


class CallbackInvalid(ValueError):
    """The body is not a callback we can read; the message goes back to the sender and stays on the event."""


class FailedFileUnavailable(Exception):
    """The failed-rows file cannot be had or read, and trying again will not change that."""


class FailedFileTemporarilyUnavailable(Exception):
    """A transport error or a 5xx fetching the failed-rows file: worth another try while its pre-signed URL is
    still valid."""
