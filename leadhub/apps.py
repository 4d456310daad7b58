from django.contrib.admin.apps import AdminConfig

from leadhub import checks  # noqa: F401  registers leadhub's deployment checks


class LeadhubAdminConfig(AdminConfig):
    default_site = "leadhub.admin_site.LeadhubAdminSite"
