from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

admin.site.site_header = "leadhub"
admin.site.site_title = "leadhub"
admin.site.index_title = "Leads, campaigns and CloudAgent uploads"

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/rq/", include("django_rq.urls")),
    path("admin/", admin.site.urls),
    path("cloudagent/", include("uploads.urls")),
]
