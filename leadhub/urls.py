from functools import wraps

from django.contrib import admin
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied
from django.urls import URLPattern, include, path
from django.views.generic import RedirectView
from django_rq.urls import get_admin_urlpatterns, get_api_urlpatterns

from leadhub import views


def queues_admin_view(view):
    """The RQ pages can empty or requeue a queue: only superusers and holders of uploads.manage_queues, not
    every staff user (django-rq asks only is_staff)."""
    return admin.site.admin_view(permission_required("uploads.manage_queues", raise_exception=True)(view))


def queues_api_view(view):
    """django-rq's stats JSON answers any staff user (or a bearer RQ_API_TOKEN): a staff user needs
    uploads.manage_queues here too, as on the pages; the token still works for a monitor."""

    @wraps(view)
    def checked(request, *args, **kwargs):
        if request.user.is_staff and not request.user.has_perm("uploads.manage_queues"):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return checked


api_urls = [URLPattern(p.pattern, queues_api_view(p.callback), p.default_args, p.name) for p in get_api_urlpatterns()]
rq_urls = (api_urls + get_admin_urlpatterns(view_wrapper=queues_admin_view), "django_rq")

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/rq/", include(rq_urls)),
    path("admin/", admin.site.urls),
    path("cloudagent/calls/", include("calls.urls")),
    path("cloudagent/", include("uploads.urls")),
    path("healthz", views.healthz, name="healthz"),
]
