"""CloudAgent's callback webhook."""

from django.http import HttpResponseNotAllowed


def cloudagent_callback(request, secret: str):
    return HttpResponseNotAllowed(["POST"])
