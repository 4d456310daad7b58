"""The client's address for login throttling. Behind our own reverse proxies REMOTE_ADDR is the nearest proxy's,
so every login would share one address and five bad guesses from anywhere would lock a user out everywhere.
With LEADHUB_TRUSTED_PROXY_COUNT proxies in front, each appending to X-Forwarded-For, the client is the entry
that many places from the right; entries further left are the client's own claims and are ignored."""

import ipaddress

from django.conf import settings


def client_ip(request) -> str | None:
    remote = request.META.get("REMOTE_ADDR")
    proxies = settings.LEADHUB_TRUSTED_PROXY_COUNT
    if not proxies:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if len(forwarded) < proxies:
        return remote
    candidate = forwarded[-proxies]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote
