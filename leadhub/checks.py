"""Deployment checks of leadhub's own settings, run by `manage.py check --deploy`."""

from django.conf import settings
from django.core.checks import Error, Tags, register


@register(Tags.security, deploy=True)
def plain_http_check(app_configs, **kwargs):
    """Plain http to CloudAgent carries the API key in clear, and a failed-rows file over http can be swapped on
    the way: allowed for development and benchmarks, never in a deployment."""
    if settings.LEADHUB_ALLOW_PLAIN_HTTP and not settings.DEBUG:
        return [
            Error(
                "LEADHUB_ALLOW_PLAIN_HTTP is on outside DJANGO_DEBUG",
                hint="Unset it: base URLs and failed-rows files must be https in production.",
                id="leadhub.E001",
            )
        ]
    return []
