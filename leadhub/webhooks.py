"""What CloudAgent's two webhooks (upload results, call summaries) share."""

import functools
import logging

from django.db import InterfaceError, OperationalError, close_old_connections
from django.http import JsonResponse

logger = logging.getLogger("leadhub.webhooks")

RETRY_AFTER_SECONDS = 30


def unavailable_while_the_database_is_down(view):
    """A database outage before the post is stored answers 503 with Retry-After, not 500: nothing was kept, and
    a sender that retries (CloudAgent's retry policy is undocumented) is told to send it again later."""

    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except (OperationalError, InterfaceError) as exc:
            logger.warning("%s answered 503: the database is unreachable (%s)", view.__name__, type(exc).__name__)
            close_old_connections()  # a broken connection goes now; the next post opens a new one
            return JsonResponse(
                {"error": "briefly unavailable: nothing was stored; send this again later"},
                status=503,
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )

    return wrapped
