"""The lead import's admin forms: django-import-export's, with the target campaign chosen in them."""

from django import forms
from import_export.forms import ConfirmImportForm, ImportForm

from campaigns.import_mapping import column_choice_field
from campaigns.models import Campaign


class LeadImportForm(ImportForm):
    campaign = forms.ModelChoiceField(
        queryset=Campaign.objects.filter(is_active=True).select_related("account"),
        help_text="The leads go into this campaign; its column map decides which columns are read.",
    )
    field_order = ["campaign", "resource", "import_file", "format"]


class LeadConfirmImportForm(ConfirmImportForm):
    """Carries the campaign and the operator's column mapping from the preview to the confirmation, beside the
    uploaded file's temporary name."""

    campaign = forms.ModelChoiceField(queryset=Campaign.objects.all(), widget=forms.HiddenInput)
    column_choice = column_choice_field()
