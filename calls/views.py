"""CloudAgent's "URL to Push" webhook: a summary after each call (docs/cloudagent-call-summary.md).

CloudAgent signs nothing, so the URL's per-account secret is the credential, as for the upload callback. The body
is stored first with its Apikey removed, then applied in the same request: a few indexed queries, whatever the
number of leads. Our answers to bad requests are not logged by Django, since its log line would carry the URL's
secret."""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse, UnreadablePostError
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from calls.models import CallSummaryPost
from calls.selectors import account_for_secret
from calls.services import call_summary_post_take


@csrf_exempt
@require_POST
def cloudagent_call_summary(request, secret: str):
    """200 when applied or a duplicate, 400 when malformed (kept as `invalid`), 202 when applying it broke on our
    side (kept as `received` for the sweep), 404 for an unknown secret, 413 over the size cap; never a 500."""
    account = account_for_secret(secret)
    if account is None:
        return _answer({"error": "unknown call summary URL"}, 404)
    limit = settings.CLOUDAGENT_CALL_SUMMARY_MAX_BYTES
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if declared.isdigit() and int(declared) > limit:
        return _answer({"error": f"the body is over {limit} bytes"}, 413)
    try:
        body = request.body
    except RequestDataTooBig:
        return _answer({"error": f"the body is over {limit} bytes"}, 413)
    except UnreadablePostError:
        return _answer({"error": "the request body could not be read"}, 400)
    if len(body) > limit:
        return _answer({"error": f"the body is over {limit} bytes"}, 413)
    post = call_summary_post_take(
        account=account,
        body=body,
        content_type=request.META.get("CONTENT_TYPE", ""),
        remote_addr=request.META.get("REMOTE_ADDR"),
    )
    if post.state == CallSummaryPost.State.RECEIVED:
        return _answer({"status": post.state, "post": post.pk}, 202)
    if post.state == CallSummaryPost.State.INVALID:
        return _answer({"error": post.error, "post": post.pk}, 400)
    return _answer({"status": post.state, "post": post.pk, "call": post.call_id})


def _answer(payload: dict, status: int = 200) -> JsonResponse:
    response = JsonResponse(payload, status=status)
    response._has_been_logged = True  # django.request would log the path, and the path holds the secret
    return response
