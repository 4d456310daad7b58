"""Every django-import-export override in one place: the lead changelist's Import (leadhub's streaming engine
behind import-export's forms and pages) and Export (streamed), and the import forms with the target campaign."""

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
from campaigns.importing.policy import ALIASES
from campaigns.importing.readers import ImportFileError
from campaigns.models import Campaign
from campaigns.resources import LeadExportResource
from campaigns.services import (
    IMPORT_PREVIEW_PREFIX,
    import_previews_sweep,
    lead_import_create,
    lead_import_preview,
    lead_import_start,
)

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
            campaign_id = import_form.cleaned_data["campaign"].pk
            initial["campaign"] = campaign_id
            initial["import_file_name"] = preview_token(
                file_name=initial["import_file_name"], campaign_id=campaign_id, user_id=request.user.pk
            )
        return initial

    def get_confirm_form_kwargs(self, request, import_form=None):
        return {**super().get_confirm_form_kwargs(request, import_form), "user": request.user}

    def _format_name(self, choice: str) -> str:
        return self.get_import_formats()[int(choice)]().get_title()

    def import_action(self, request, **kwargs):
        if not self.has_import_permission(request):
            raise PermissionDenied
        form = self.create_import_form(request)
        context = self.get_import_context_data()
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["import_file"]
            # The stock view's tmp storage, written chunk by chunk: its save() takes the whole file at once.
            import_previews_sweep()
            with tempfile.NamedTemporaryFile(prefix=IMPORT_PREVIEW_PREFIX, delete=False) as f:
                for chunk in upload.chunks():
                    f.write(chunk)
            storage = TempFolderStorage(name=os.path.basename(f.name))
            try:
                context["report"] = lead_import_preview(
                    campaign=form.cleaned_data["campaign"],
                    path=storage.get_full_path(),
                    file_name=upload.name,
                    file_format=self._format_name(form.cleaned_data["format"]),
                )
            except ImportFileError as exc:
                storage.remove()
                form.add_error("import_file", str(exc))
            else:
                upload.tmp_storage_name = storage.name
                context["confirm_form"] = self.create_confirm_form(request, import_form=form)
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
