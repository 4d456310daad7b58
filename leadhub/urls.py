from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from leadhub import views

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/rq/", include("django_rq.urls")),
    path("admin/", admin.site.urls),
    path("cloudagent/calls/", include("calls.urls")),
    path("cloudagent/", include("uploads.urls")),
    path("healthz", views.healthz, name="healthz"),
]
