"""django-import-export resources: leads out to CSV and XLSX, for people to open in a spreadsheet."""

import re

from import_export import fields, resources

from campaigns.models import Lead

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_SIGNED_NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?")


def escape_formula(value: object) -> object:
    """A cell a spreadsheet would run as a formula (OWASP "CSV injection") gets a leading apostrophe, for CSV and
    XLSX alike (openpyxl writes a string starting with "=" as a formula). A signed number such as +919876543210 is
    left alone: a spreadsheet reads it as the number it is. import-export's own escaping only drops a leading "="."""
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _SIGNED_NUMBER.fullmatch(value):
        return "'" + value
    return value


class LeadExportResource(resources.ModelResource):
    campaign = fields.Field(attribute="campaign__name", column_name="campaign")
    transaction_id = fields.Field(attribute="upload_transaction__transaction_id", column_name="transaction_id")
    lead_import = fields.Field(attribute="lead_import_id", column_name="import")

    class Meta:
        model = Lead
        fields = (
            "id",
            "campaign",
            "phone_number",
            "name",
            "priority",
            "expiry_date",
            "agent_id",
            "skill",
            "extra",
            "status",
            "status_reason",
            "transaction_id",
            "source",
            "lead_import",
            "source_line",
            "call_attempts",
            "last_dial_status",
            "last_customer_status",
            "last_disposition",
            "last_call_at",
            "created_at",
            "updated_at",
        )
        export_order = fields

    @classmethod
    def get_display_name(cls):
        return "Leads"

    def export_field(self, field, instance, **kwargs):
        return escape_formula(super().export_field(field, instance, **kwargs))
