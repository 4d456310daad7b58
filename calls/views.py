"""CloudAgent's "URL to Push" webhook: a summary after each call (docs/cloudagent-call-summary.md).

CloudAgent signs nothing, so the URL's per-account secret is the credential, as for the upload callback. The body
is stored first with its Apikey removed, then applied in the same request: a few indexed queries, whatever the
number of leads. Django logs our 4xx answers with the URL's secret replaced (leadhub/logfilters.py)."""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse, UnreadablePostError
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from calls.models import CallSummaryPost
from calls.selectors import account_for_secret
from calls.services import call_summary_post_take
from leadhub.webhooks import unavailable_while_the_database_is_down


@csrf_exempt
@require_POST
@unavailable_while_the_database_is_down
def cloudagent_call_summary(request, secret: str):
    """200 when applied or a duplicate, 400 when malformed (kept as `invalid`), 202 when applying it broke on our
    side (kept as `received` for the sweep), 404 for an unknown secret, 413 over the size cap; never a 500."""
    account = account_for_secret(secret)
    if account is None:
        return JsonResponse({"error": "unknown call summary URL"}, status=404)
    limit = settings.CLOUDAGENT_CALL_SUMMARY_MAX_BYTES
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if declared.isdigit() and int(declared) > limit:
        return JsonResponse({"error": f"the body is over {limit} bytes"}, status=413)
    try:
        body = request.body
    except RequestDataTooBig:
        return JsonResponse({"error": f"the body is over {limit} bytes"}, status=413)
    except UnreadablePostError:
        return JsonResponse({"error": "the request body could not be read"}, status=400)
    if len(body) > limit:
        return JsonResponse({"error": f"the body is over {limit} bytes"}, status=413)
    post = call_summary_post_take(
        account=account,
        body=body,
        content_type=request.META.get("CONTENT_TYPE", ""),
        remote_addr=request.META.get("REMOTE_ADDR"),
    )
    if post.state == CallSummaryPost.State.RECEIVED:
        return JsonResponse({"status": post.state, "post": post.pk}, status=202)
    if post.state == CallSummaryPost.State.INVALID:
        return JsonResponse({"error": post.error, "post": post.pk}, status=400)
    return JsonResponse({"status": post.state, "post": post.pk, "call": post.call_id})
