from django.contrib.admin.apps import AdminConfig


class LeadhubAdminConfig(AdminConfig):
    default_site = "leadhub.admin_site.LeadhubAdminSite"
