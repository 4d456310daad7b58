"""CloudAgent's callback webhook (docs/cloudagent-contract.md, "The asynchronous result").

CloudAgent signs nothing, so the URL's per-account secret is the credential. The raw request is stored before
anything reads it; then the stored event is applied in the same request with set-based UPDATEs (a 500-lead
transaction is a handful of statements) and the slow part, the failed-file download, goes to an RQ job.
"""

import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse, UnreadablePostError
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from leadhub.webhooks import unavailable_while_the_database_is_down
from uploads.callbacks import callback_event_receive
from uploads.models import CallbackEvent
from uploads.selectors import account_for_callback_secret
from uploads.services import callback_event_apply

logger = logging.getLogger(__name__)


@csrf_exempt
@require_POST
@unavailable_while_the_database_is_down
def cloudagent_callback(request, secret: str):
    """Answers 200 when the callback is applied, waiting for its transaction, or ignored as a duplicate; 400
    when it is malformed (kept as `invalid`); 202 when applying it broke on our side (kept as `received`
    for the sweep). Nothing a provider sends makes it a 500."""
    account = account_for_callback_secret(secret)
    if account is None:
        return JsonResponse({"error": "unknown callback URL"}, status=404)
    limit = settings.CLOUDAGENT_CALLBACK_MAX_BYTES
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if declared.isdigit() and int(declared) > limit:
        return _too_large(limit)
    try:
        body = request.body
    except RequestDataTooBig:
        return _too_large(limit)
    except UnreadablePostError:
        return JsonResponse({"error": "the request body could not be read"}, status=400)
    if len(body) > limit:
        return _too_large(limit)
    event = callback_event_receive(
        account=account,
        body=body,
        content_type=request.META.get("CONTENT_TYPE", ""),
        remote_addr=request.META.get("REMOTE_ADDR"),
    )
    try:
        event = callback_event_apply(event=event)
    except Exception:
        logger.exception("callback event %s stored but not applied; the sweep will retry it", event.pk)
        return JsonResponse({"status": CallbackEvent.State.RECEIVED, "event": event.pk}, status=202)
    if event.state == CallbackEvent.State.INVALID:
        return JsonResponse({"error": event.error, "event": event.pk}, status=400)
    return JsonResponse({"status": event.state, "event": event.pk})


def _too_large(limit: int) -> JsonResponse:
    return JsonResponse({"error": f"the body is over {limit} bytes"}, status=413)
