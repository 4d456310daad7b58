"""The lead import's admin forms: django-import-export's, with the target campaign chosen in them."""

from django import forms
from django.conf import settings
from django.core import signing
from import_export.forms import ConfirmImportForm, ImportForm

from campaigns.models import Campaign

PREVIEW_SALT = "leadhub.import-preview"


class LeadImportForm(ImportForm):
    campaign = forms.ModelChoiceField(
        queryset=Campaign.objects.filter(is_active=True).select_related("account"),
        help_text="The leads go into this campaign; its column map decides which columns are read.",
    )
    field_order = ["campaign", "resource", "import_file", "format"]


def preview_token(*, file_name: str, campaign_id: int, user_id: int) -> str:
    """What the confirmation may import, signed: the browser carries it but cannot change the file (the stock
    form's bare temp-file name let one user import, and delete, another's upload), the campaign or the user."""
    return signing.dumps({"file": file_name, "campaign": campaign_id, "user": user_id}, salt=PREVIEW_SALT)


class LeadConfirmImportForm(ConfirmImportForm):
    """Carries the preview to the confirmation: `import_file_name` holds a signed token naming the uploaded
    file's temporary name, the campaign and the user, checked again here along with the campaign being active."""

    campaign = forms.ModelChoiceField(queryset=Campaign.objects.filter(is_active=True), widget=forms.HiddenInput)

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_import_file_name(self):
        try:
            return signing.loads(
                self.cleaned_data["import_file_name"],
                salt=PREVIEW_SALT,
                max_age=settings.LEADHUB_IMPORT_PREVIEW_MAX_AGE_SECONDS,
            )
        except signing.BadSignature:
            raise forms.ValidationError("The preview has expired or was altered; upload the file again.") from None

    def clean(self):
        cleaned = super().clean()
        token, campaign = cleaned.get("import_file_name"), cleaned.get("campaign")
        if not isinstance(token, dict) or campaign is None:
            return cleaned
        if token["campaign"] != campaign.pk or self.user is None or token["user"] != self.user.pk:
            raise forms.ValidationError("The confirmation does not match the preview; upload the file again.")
        cleaned["import_file_name"] = token["file"]
        return cleaned
