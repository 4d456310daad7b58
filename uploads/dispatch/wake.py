"""A nudge to every dispatch process that new batches exist, so a push starts sending at once rather than at
the next poll. Only a shortcut: a nudge lost with Redis costs one poll (LEADHUB_DISPATCH_POLL_SECONDS), since
the database, not the message, holds the batches."""

import logging

import redis
from django.conf import settings

logger = logging.getLogger("leadhub.dispatch")

WAKE_CHANNEL = "leadhub:dispatch:wake"


def dispatch_wake() -> None:
    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1).publish(WAKE_CHANNEL, "1")
    except redis.RedisError:
        logger.warning("could not nudge the dispatchers; they find the batches at their next poll", exc_info=True)
