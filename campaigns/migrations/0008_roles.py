"""The three roles, as groups: a user is given one (or more) in the admin. Superusers need none.

- Viewers: read leads, campaigns, imports, transactions, callbacks and calls (not accounts: their page shows
  the callback URLs, credentials).
- Operators: Viewers, plus enter and edit leads, import (and resume) files, push, re-push and redial leads.
- Managers: Operators, plus accounts and campaigns, export, undo an import (delete its leads), apply
  callbacks again. Transactions and callback events are records: nobody edits or deletes them in the admin.
The RQ queue pages need `uploads.manage_queues`, which no role has.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

VIEWERS = [
    "campaigns.view_lead",
    "campaigns.view_campaign",
    "campaigns.view_leadimport",
    "uploads.view_uploadtransaction",
    "uploads.view_callbackevent",
    "calls.view_call",
    "calls.view_callsummarypost",
]
OPERATORS = [
    *VIEWERS,
    "campaigns.add_lead",
    "campaigns.change_lead",
    "campaigns.import_lead",
    "campaigns.push_lead",
    "uploads.repush_uploadtransaction",
]
MANAGERS = [
    *OPERATORS,
    "campaigns.delete_lead",
    "campaigns.export_lead",
    "campaigns.add_campaign",
    "campaigns.change_campaign",
    "campaigns.view_cloudagentaccount",
    "campaigns.add_cloudagentaccount",
    "campaigns.change_cloudagentaccount",
    "uploads.apply_callbackevent",
]
ROLES = {"Viewers": VIEWERS, "Operators": OPERATORS, "Managers": MANAGERS}


def create_roles(apps, schema_editor):
    # Permissions are normally created after the last migration; the groups need them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codes in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        permissions = [
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
            for app_label, codename in (code.split(".") for code in codes)
        ]
        group.permissions.set(permissions)


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("campaigns", "0007_lead_permissions"),
        ("uploads", "0005_permissions"),
        ("calls", "0001_initial"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
