from django.contrib import admin
from django.contrib.auth.decorators import permission_required
from django.urls import include, path
from django.views.generic import RedirectView
from django_rq.urls import get_admin_urlpatterns, get_api_urlpatterns

from leadhub import views


def queues_admin_view(view):
    """The RQ pages can empty or requeue a queue: only superusers and holders of uploads.manage_queues, not
    every staff user (django-rq asks only is_staff)."""
    return admin.site.admin_view(permission_required("uploads.manage_queues", raise_exception=True)(view))


rq_urls = (get_api_urlpatterns() + get_admin_urlpatterns(view_wrapper=queues_admin_view), "django_rq")

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/rq/", include(rq_urls)),
    path("admin/", admin.site.urls),
    path("cloudagent/calls/", include("calls.urls")),
    path("cloudagent/", include("uploads.urls")),
    path("healthz", views.healthz, name="healthz"),
]
