"""Every django-import-export override in one place: the lead changelist's Import (leadhub's streaming engine
behind import-export's forms and pages: upload, the column-mapping step, the preview, Confirm) and Export
(streamed), and the import forms with the target campaign."""

import json
import os
import tempfile

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core import signing
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, StreamingHttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views.decorators.http import require_POST
from import_export.admin import ImportExportMixin
from import_export.formats.base_formats import CSV, JSON, ODS, TSV, XLS, XLSX
from import_export.forms import ConfirmImportForm, ImportForm
from import_export.tmp_storages import TempFolderStorage

from campaigns.exporting import leads_export_csv, leads_export_xlsx
from campaigns.importing.columns import ALIASES, EXTRA, IGNORE, MappingProposal
from campaigns.importing.readers import ImportFileError
from campaigns.models import Campaign
from campaigns.resources import LeadExportResource
from campaigns.services import (
    IMPORT_PREVIEW_PREFIX,
    import_previews_sweep,
    lead_import_create,
    lead_import_preview,
    lead_import_preview_start,
    lead_import_propose,
    lead_import_start,
)

PREVIEW_SALT = "leadhub.import-preview"


def preview_token(*, file_name: str, campaign_id: int, user_id: int) -> str:
    """What the mapping step and the confirmation may import, signed: the browser carries it but cannot change the
    file (a bare temp-file name let one user import, and delete, another's upload), the campaign or the user."""
    return signing.dumps({"file": file_name, "campaign": campaign_id, "user": user_id}, salt=PREVIEW_SALT)


def preview_token_read(token: str, *, user) -> dict | None:
    """The token's {file, campaign, user} if it is ours, fresh and this user's; None otherwise."""
    try:
        found = signing.loads(token, salt=PREVIEW_SALT, max_age=settings.LEADHUB_IMPORT_PREVIEW_MAX_AGE_SECONDS)
    except signing.BadSignature:
        return None
    return found if isinstance(found, dict) and user is not None and found.get("user") == user.pk else None


class LeadImportForm(ImportForm):
    campaign = forms.ModelChoiceField(
        queryset=Campaign.objects.filter(is_active=True).select_related("account"),
        help_text="The leads go into this campaign; its column map decides which columns are read.",
    )
    field_order = ["campaign", "resource", "import_file", "format"]


class LeadConfirmImportForm(ConfirmImportForm):
    """Carries the campaign and the operator's column mapping (JSON) from the preview to the confirmation;
    `import_file_name` holds a signed token (preview_token) naming the uploaded file, the campaign and the user,
    checked here along with the campaign being active."""

    campaign = forms.ModelChoiceField(queryset=Campaign.objects.filter(is_active=True), widget=forms.HiddenInput)
    column_choice = forms.CharField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_import_file_name(self):
        return self.cleaned_data["import_file_name"]  # the stock form keeps only a basename: a token is not one

    def clean(self):
        cleaned = super().clean()
        campaign = cleaned.get("campaign")
        token = preview_token_read(cleaned.get("import_file_name") or "", user=self.user)
        if token is None or campaign is None or token["campaign"] != campaign.pk:
            raise forms.ValidationError("The preview has expired or does not match; upload the file again.")
        cleaned["import_file_name"] = token["file"]
        return cleaned


# ---------------------------------------------------------------------------------------------- the mapping step
# Every column of the uploaded file with a few of its values and a choice of campaign field, pre-filled from the
# proposal (campaigns.importing.columns). Field names are stable (`column_0`, `column_1`, ... in the file's order)
# so the step can be driven by a browser test.

CHOICE_LABELS = {EXTRA: "Keep as an extra field (not sent)", IGNORE: "Ignore"}


def field_choices(column_map: list[str]) -> list[tuple[str, str]]:
    return [(name, name) for name in column_map] + list(CHOICE_LABELS.items())


class ColumnMappingForm(forms.Form):
    """The file stays in the upload's temporary storage between the steps; these hidden fields find it again."""

    campaign = forms.ModelChoiceField(queryset=Campaign.objects.all(), widget=forms.HiddenInput)
    import_file_name = forms.CharField(widget=forms.HiddenInput)
    original_file_name = forms.CharField(widget=forms.HiddenInput)
    format = forms.CharField(widget=forms.HiddenInput)

    def __init__(self, *args, campaign: Campaign, proposal: MappingProposal, **kw):
        super().__init__(*args, **kw)
        self.header = [column.header for column in proposal.columns]
        choices = field_choices(list(campaign.column_map))
        for column in proposal.columns:
            field = forms.ChoiceField(
                label=column.header or f"(column {column.position + 1}, no header)",
                choices=choices if column.header.strip() else [(IGNORE, CHOICE_LABELS[IGNORE])],
                initial=column.field,
                help_text=column.reason,
            )
            field.samples = column.samples
            self.fields[f"column_{column.position}"] = field

    def clean(self):
        cleaned = super().clean()
        chosen = [cleaned.get(f"column_{i}") for i in range(len(self.header))]
        if "PhoneNumber" not in chosen:
            raise forms.ValidationError("Choose the column that holds the phone numbers (PhoneNumber).")
        twice = sorted({f for f in chosen if f not in (EXTRA, IGNORE, None) and chosen.count(f) > 1})
        if twice:
            raise forms.ValidationError(f"Each field can come from one column only: {', '.join(twice)} chosen twice.")
        return cleaned

    def column_choice(self) -> dict[str, str]:
        """Header -> field for every column with a header: the services' shape."""
        return {
            name: self.cleaned_data[f"column_{position}"] for position, name in enumerate(self.header) if name.strip()
        }


def column_choice_from(text: str) -> dict[str, str]:
    try:
        choice = json.loads(text or "{}")
    except json.JSONDecodeError:
        return {}
    return {str(k): str(v) for k, v in choice.items()} if isinstance(choice, dict) else {}


class LeadImportExportMixin(ImportExportMixin):
    """django-import-export's Import and Export on the lead changelist, with leadhub's streaming engine behind the
    import. The stock view loads the whole file into a tablib Dataset, imports 300-5,000 rows/s and hides Confirm
    when any row is invalid; here the preview is a dry run of the whole file that lists every rejected row and
    writes nothing, and Confirm imports the rest (docs/performance.md, Import)."""

    resource_classes = [LeadExportResource]
    import_formats = [CSV, XLSX, XLS, TSV, ODS, JSON]
    export_formats = [CSV, XLSX]
    import_form_class = LeadImportForm
    confirm_form_class = LeadConfirmImportForm
    import_template_name = "admin/campaigns/lead/import.html"

    def _do_file_export(self, file_format, request, queryset, export_form=None):
        """Stream the export instead of building it in memory; the form's format and fields still decide."""
        if not self.has_export_permission(request):
            raise PermissionDenied
        fields = self.get_export_resource_fields_from_form(export_form)
        if isinstance(file_format, CSV):
            response = StreamingHttpResponse(
                leads_export_csv(queryset, fields=fields), content_type="text/csv; charset=utf-8"
            )
        else:
            response = FileResponse(
                leads_export_xlsx(queryset, fields=fields), content_type=file_format.get_content_type()
            )
        filename = self.get_export_filename(request, queryset, file_format)
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response

    def get_confirm_form_initial(self, request, import_form):
        initial = super().get_confirm_form_initial(request, import_form)
        if import_form is not None:
            initial["campaign"] = import_form.cleaned_data["campaign"].pk
        return initial

    def get_confirm_form_kwargs(self, request, import_form=None):
        return {**super().get_confirm_form_kwargs(request, import_form), "user": request.user}

    def _format_name(self, choice: str) -> str:
        return self.get_import_formats()[int(choice)]().get_title()

    def import_action(self, request, **kwargs):
        """Upload, then the column-mapping step, then the preview (a dry run; in the background for a big file),
        then Confirm. The file waits in the upload's temporary storage between the steps."""
        if not self.has_import_permission(request):
            raise PermissionDenied
        context = self.get_import_context_data()
        if request.method == "POST" and "column_mapping" in request.POST:
            form = self.create_import_form(request)
            response = self._mapped(request, context)
            if response is not None:
                return response
        else:
            form = self.create_import_form(request)
            if request.method == "POST" and form.is_valid():
                self._uploaded(request, form, context)
        context.update(
            self.admin_site.each_context(request),
            title="Import leads",
            form=form,
            opts=self.opts,
            media=self.media + form.media,
            fields_list=[("Leads", [f"{std} ({', '.join(names)})" for std, names in ALIASES.items()])],
        )
        request.current_app = self.admin_site.name
        return TemplateResponse(request, [self.import_template_name], context)

    def _uploaded(self, request, form, context) -> None:
        """Step 1 -> 2: keep the upload, propose a field for every column."""
        upload = form.cleaned_data["import_file"]
        campaign = form.cleaned_data["campaign"]
        # The stock view's tmp storage, written chunk by chunk: its save() takes the whole file at once.
        import_previews_sweep()
        with tempfile.NamedTemporaryFile(prefix=IMPORT_PREVIEW_PREFIX, delete=False) as f:
            for chunk in upload.chunks():
                f.write(chunk)
        storage = TempFolderStorage(name=os.path.basename(f.name))
        file_format = self._format_name(form.cleaned_data["format"])
        try:
            proposal, _estimate = lead_import_propose(
                campaign=campaign, path=storage.get_full_path(), file_name=upload.name, file_format=file_format
            )
        except ImportFileError as exc:
            storage.remove()
            form.add_error("import_file", str(exc))
            return
        hidden = {
            "campaign": campaign.pk,
            "import_file_name": preview_token(file_name=storage.name, campaign_id=campaign.pk, user_id=request.user.pk),
            "original_file_name": upload.name,
            "format": form.cleaned_data["format"],
        }
        context["mapping_form"] = ColumnMappingForm(initial=hidden, campaign=campaign, proposal=proposal)
        context.update(proposal=proposal, phone_problem=proposal.phone_problem(), mapping_file_name=upload.name)

    def _mapped(self, request, context):
        """Step 2 -> 3: the operator's mapping; a preview now, or in the background for a big file."""
        import_url = reverse("admin:campaigns_lead_import", current_app=self.admin_site.name)
        # The file and the campaign come from the signed token, never from the form's other fields.
        token = preview_token_read(request.POST.get("import_file_name", ""), user=request.user)
        campaign = Campaign.objects.filter(pk=token["campaign"], is_active=True).first() if token else None
        storage = TempFolderStorage(name=os.path.basename(token["file"])) if token else None
        if campaign is None or not os.path.exists(storage.get_full_path()):
            self.message_user(request, "The uploaded file is gone; upload it again.", messages.ERROR)
            return redirect(import_url)
        file_name = request.POST.get("original_file_name", "")
        file_format = self._format_name(request.POST.get("format", "0"))
        try:
            proposal, estimate = lead_import_propose(
                campaign=campaign, path=storage.get_full_path(), file_name=file_name, file_format=file_format
            )
        except ImportFileError as exc:
            storage.remove()
            self.message_user(request, str(exc), messages.ERROR)
            return redirect(import_url)
        mapping_form = ColumnMappingForm(request.POST, campaign=campaign, proposal=proposal)
        if not mapping_form.is_valid():
            context.update(
                mapping_form=mapping_form,
                proposal=proposal,
                phone_problem=proposal.phone_problem(),
                mapping_file_name=file_name,
            )
            return None
        choice = mapping_form.column_choice()
        if estimate > settings.LEADHUB_IMPORT_BACKGROUND_ROWS:
            try:
                lead_import = lead_import_create(
                    campaign=campaign,
                    path=storage.get_full_path(),
                    file_name=file_name,
                    file_format=file_format,
                    column_choice=choice,
                    created_by=request.user,
                    preview=True,
                )
            except ImportFileError as exc:
                self.message_user(request, str(exc), messages.ERROR)
                return redirect(import_url)
            finally:
                storage.remove()
            lead_import_preview_start(lead_import=lead_import)
            self.message_user(request, "The preview runs in the background; this page shows its progress.")
            url = reverse("admin:campaigns_leadimport_change", args=[lead_import.pk], current_app=self.admin_site.name)
            return redirect(url)
        try:
            context["report"] = lead_import_preview(
                campaign=campaign,
                path=storage.get_full_path(),
                file_name=file_name,
                file_format=file_format,
                column_choice=choice,
            )
        except ImportFileError as exc:
            context.update(
                mapping_form=mapping_form, proposal=proposal, phone_problem=str(exc), mapping_file_name=file_name
            )
            return None
        context["confirm_form"] = LeadConfirmImportForm(
            initial={
                "import_file_name": preview_token(
                    file_name=storage.name, campaign_id=campaign.pk, user_id=request.user.pk
                ),
                "original_file_name": file_name,
                "format": request.POST.get("format", "0"),
                "resource": "0",
                "campaign": campaign.pk,
                "column_choice": json.dumps(choice),
            }
        )
        context["preview_campaign"] = campaign
        return None

    @method_decorator(require_POST)
    def process_import(self, request, **kwargs):
        """Confirm: the import record takes its own copy of the previewed file, then runs now or, when large, in
        the background (lead_import_start)."""
        if not self.has_import_permission(request):
            raise PermissionDenied
        form = self.create_confirm_form(request)
        import_url = reverse("admin:campaigns_lead_import", current_app=self.admin_site.name)
        if not form.is_valid():
            self.message_user(request, "The confirmation was incomplete; upload the file again.", messages.ERROR)
            return redirect(import_url)
        storage = TempFolderStorage(name=form.cleaned_data["import_file_name"])
        if not os.path.exists(storage.get_full_path()):
            self.message_user(request, "The uploaded file is gone (confirmed twice?); upload it again.", messages.ERROR)
            return redirect(import_url)
        try:
            lead_import = lead_import_create(
                campaign=form.cleaned_data["campaign"],
                path=storage.get_full_path(),
                file_name=form.cleaned_data["original_file_name"],
                file_format=self._format_name(form.cleaned_data["format"]),
                column_choice=column_choice_from(form.cleaned_data["column_choice"]),
                created_by=request.user,
            )
        except ImportFileError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return redirect(import_url)
        finally:
            storage.remove()
        url = reverse("admin:campaigns_leadimport_change", args=[lead_import.pk], current_app=self.admin_site.name)
        try:
            background = lead_import_start(lead_import=lead_import)
        except ImportFileError as exc:
            self.message_user(request, f"The import failed: {exc}", messages.ERROR)
            return redirect(url)
        if background:
            self.message_user(request, "The import runs in the background; this page shows its progress.")
        else:
            lead_import.refresh_from_db()
            self.message_user(request, f"Imported: {lead_import.message}", messages.SUCCESS)
        return redirect(url)
