"""leadhub's admin site: Django's, with a dashboard on its index page."""

from django.contrib import admin

from uploads.selectors import dashboard


class LeadhubAdminSite(admin.AdminSite):
    site_header = "leadhub"
    site_title = "leadhub"
    index_title = "Leads, campaigns and CloudAgent uploads"
    index_template = "admin/leadhub_index.html"

    def index(self, request, extra_context=None):
        return super().index(request, {"dashboard": dashboard(), **(extra_context or {})})
