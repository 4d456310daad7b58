"""leadhub's admin site: Django's, with a dashboard on its index page."""

from django.contrib import admin

from calls.outcomes import outcomes_panel
from uploads.selectors import dashboard


class LeadhubAdminSite(admin.AdminSite):
    site_header = "leadhub"
    site_title = "leadhub"
    index_title = "Leads, campaigns and CloudAgent uploads"
    index_template = "admin/leadhub_index.html"

    def index(self, request, extra_context=None):
        summary = dashboard()
        context = {
            "dashboard": summary,
            "call_outcomes": outcomes_panel(lead_counts=summary["leads"]),
            **(extra_context or {}),
        }
        return super().index(request, context)
