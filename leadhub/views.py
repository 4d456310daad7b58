"""A health check for load balancers and uptime monitors: the app answers only if its database and Redis do.

It also says whether pushing is moving (`dispatch`), and if not why; a stalled dispatch does not turn the answer
into a 503, since the web app itself is fine and a load balancer must keep sending it traffic. The page needs no
login, so the reasons (which name accounts, campaigns, hosts and CloudAgent's messages) are shown only to a user
who may view upload transactions; anyone else sees the counts."""

import redis
from django.conf import settings
from django.db import connection
from django.http import JsonResponse

from uploads.selectors import dispatch_health


def healthz(request):
    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # any failure is the answer, not a crash
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1).ping()
        checks["redis"] = "ok"
    except redis.RedisError as exc:
        checks["redis"] = f"error: {type(exc).__name__}"
    healthy = all(value == "ok" for value in checks.values())
    if checks["database"] == "ok":
        dispatch = dispatch_health()
        checks["dispatch"] = "stalled" if dispatch["stalled"] else "ok"
        if not request.user.has_perm("uploads.view_uploadtransaction"):
            dispatch = {**dispatch, "stalled": len(dispatch["stalled"])}
        checks["dispatch_detail"] = dispatch
    return JsonResponse(checks, status=200 if healthy else 503)
