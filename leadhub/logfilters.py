"""Logging filters. CloudAgent signs nothing, so a callback URL's path holds the secret that authenticates it,
and Django writes request paths into the log (django.request on every 4xx/5xx, django.server per request):
every path segment after a /cloudagent/<endpoint>/ prefix is replaced before any handler sees the record."""

import logging
import re

# /cloudagent/callback/<secret>/..., and any other endpoint under /cloudagent/ (the call-summary webhook too).
SECRET_PATH = re.compile(r"(/cloudagent/[A-Za-z0-9_.-]+/)[^\s\"'?#]+")
REDACTED = "[redacted]"


def redact_secret_paths(text: str, replacement: str = REDACTED) -> str:
    return SECRET_PATH.sub(lambda match: match.group(1) + replacement, text)


class RedactSecretPaths(logging.Filter):
    """Formats the message once, redacted, and drops the arguments; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is the handler's to report, not ours
            return True
        redacted = redact_secret_paths(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        request = getattr(record, "request", None)
        if request is not None and SECRET_PATH.search(getattr(request, "path", "")):
            record.request = None  # AdminEmailHandler would print the request, path and all
        return True
