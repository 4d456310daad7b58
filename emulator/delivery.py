"""Outbound POSTs: upload callbacks to a request's callBackUrl and call summaries to a URL to Push, each tried
again on failure and every try recorded."""

from __future__ import annotations

import http.client
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from emulator.protocol import now_text

USER_AGENT = "cloudagent-emulator"

# Posts go straight to the receiver: a proxy from the environment is not the provider's.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


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
class SummaryPost:
    """One POST of a call summary to a URL to Push. kind: "immediate" (no Disposition) or "delayed" (with it).
    state: waiting -> sending -> answered (a 2xx) or failed (every try ended in a connection error or a non-2xx:
    the provider's "Call back hit tries")."""

    id: int
    monitor_ucid: str
    kind: str
    url: str
    content_type: str
    body: str
    due: float
    state: str = "waiting"
    tries: list[dict] = field(default_factory=list)


def post(url: str, content_type: str, body: str, timeout: float) -> tuple[int | None, str | None]:
    """(HTTP status, None) when the receiver answered, else (None, the error)."""
    request = urllib.request.Request(
        url, data=body.encode(), method="POST", headers={"Content-Type": content_type, "User-Agent": USER_AGENT}
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read()
            return response.status, None
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code, None
    except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError is an OSError
        return None, f"{type(exc).__name__}: {exc}"


def post_with_tries(
    target: Callback | SummaryPost,
    *,
    tries: int,
    retry_delay: float,
    timeout: float,
    accepted: Callable[[int], bool],
    stopping: threading.Event,
    record: Callable[[dict], None],
) -> bool:
    """POST `target` up to `tries` times, `retry_delay` apart, until the receiver answers with an accepted status;
    `record` gets each try. False when every try failed or the emulator is stopping."""
    for attempt in range(tries):
        if attempt and stopping.wait(retry_delay):
            return False
        status, error = post(target.url, target.content_type, target.body, timeout)
        record({"at": now_text(), "status": status, "error": error})
        if error is None and accepted(status):
            return True
    return False
