"""The product's face: accounts, campaigns and leads, built to stay fast with millions of leads."""

import logging
import os
from collections import Counter

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db import connections, models
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.functional import cached_property
from django.utils.html import format_html

from calls.admin import (
    CallInline,
    LastDialStatusFilter,
    LastDispositionFilter,
    redial_campaign_leads,
    redial_selected_leads,
)
from calls.outcomes import outcomes_panel
from calls.selectors import call_summary_url_for
from campaigns.admin_import_export import LeadImportExportMixin
from campaigns.importing.readers import ImportFileError
from campaigns.models import Campaign, CloudAgentAccount, Lead, LeadImport
from campaigns.normalize import PhoneError, normalize_phone
from campaigns.services import (
    LeadImportError,
    account_base_url_check,
    account_callback_secret_rotate,
    account_upsert,
    campaign_upsert,
    lead_import_confirm,
    lead_import_resume,
    lead_import_undo,
    lead_phone_check,
)
from uploads.selectors import campaign_progress
from uploads.services import callback_url_for, campaign_push_new, leads_push_request, push_summary_messages

logger = logging.getLogger("leadhub.admin")


PUSH_MESSAGE_LEVELS = {"success": messages.SUCCESS, "warning": messages.WARNING, "info": messages.INFO}


def report_push(modeladmin, request, summary) -> None:
    """Tell the operator at once what the push will do: leads, batches, ETA, and everything left out."""
    for level, text in push_summary_messages(summary):
        modeladmin.message_user(request, text, PUSH_MESSAGE_LEVELS[level])


@admin.action(description="Push selected leads to CloudAgent", permissions=["push"])
def push_selected_leads(modeladmin, request, queryset):
    report_push(modeladmin, request, leads_push_request(leads=queryset, user=request.user))


@admin.action(description="Push all new leads to CloudAgent", permissions=["push"])
def push_new_leads(modeladmin, request, queryset):
    for campaign in queryset:
        report_push(modeladmin, request, campaign_push_new(campaign=campaign, user=request.user))


class EstimatedCountPaginator(Paginator):
    """An unfiltered changelist on PostgreSQL counts from the planner's estimate: COUNT(*) over millions of
    leads costs most of a second (docs/performance.md, Admin at 5M leads)."""

    ESTIMATE_ABOVE = 100_000

    @cached_property
    def count(self):
        query = self.object_list.query
        connection = connections[self.object_list.db]
        if connection.vendor == "postgresql" and not query.where:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE relname = %s", [query.model._meta.db_table]
                )
                row = cursor.fetchone()
            if row and row[0] > self.ESTIMATE_ABOVE:
                return row[0]
        return super().count


class AccountForm(forms.ModelForm):
    """The API key is write-only: shown masked, replaced only when a new one is typed."""

    api_key = forms.CharField(
        label="API key",
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Leave empty to keep the current key.",
    )

    class Meta:
        model = CloudAgentAccount
        fields = ["name", "user_name", "api_key", "base_url", "is_active"]

    def clean_api_key(self):
        key = self.cleaned_data.get("api_key", "").strip()
        self.api_key_typed = bool(key)
        if key:
            return key
        if self.instance.pk:
            return self.instance.api_key
        raise forms.ValidationError("An API key is required.")

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("base_url"):
            try:
                account_base_url_check(
                    stored_base_url=self.instance.base_url if self.instance.pk else None,
                    base_url=cleaned["base_url"],
                    api_key_given=getattr(self, "api_key_typed", False),
                )
            except ValidationError as exc:
                self.add_error(None, exc)
        return cleaned


@admin.action(description="Rotate the callback URL of selected accounts", permissions=["change"])
def rotate_callback_secret(modeladmin, request, queryset):
    for account_id in queryset.values_list("pk", flat=True):
        account_callback_secret_rotate(account_id=account_id)
    hours = settings.CLOUDAGENT_CALLBACK_SECRET_GRACE_SECONDS / 3600
    modeladmin.message_user(
        request,
        f"New callback URLs for {queryset.count()} account(s); the old ones answer for {hours:g} more hour(s).",
        messages.SUCCESS,
    )


@admin.register(CloudAgentAccount)
class CloudAgentAccountAdmin(admin.ModelAdmin):
    form = AccountForm
    actions = [rotate_callback_secret]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = ["name", "user_name", "api_key_masked", "base_url", "is_active", "problem_flag"]
    list_filter = ["is_active"]
    search_fields = ["name", "user_name"]
    readonly_fields = [
        "api_key_masked",
        "callback_url",
        "cdr_url",
        "problem",
        "problem_at",
        "created_at",
        "updated_at",
    ]
    fieldsets = [
        (None, {"fields": ["name", "user_name", "api_key", "api_key_masked", "base_url", "is_active"]}),
        ("CloudAgent callback and URL to Push (paste both into CloudAgent)", {"fields": ["callback_url", "cdr_url"]}),
        ("Health", {"fields": ["problem", "problem_at", "created_at", "updated_at"]}),
    ]

    @admin.display(description="API key")
    def api_key_masked(self, obj):
        return obj.masked_api_key

    @admin.display(description="OK", boolean=True)
    def problem_flag(self, obj):
        return not obj.problem

    def save_model(self, request, obj, form, change):
        account_upsert(
            account=obj,
            name=obj.name,
            user_name=obj.user_name,
            api_key=obj.api_key,
            base_url=obj.base_url,
            is_active=obj.is_active,
        )

    @admin.display(description="callback URL")
    def callback_url(self, obj):
        return callback_url_for(obj) if obj.pk else "—"

    @admin.display(description="URL to Push (call summaries)")
    def cdr_url(self, obj):
        return call_summary_url_for(obj) if obj.pk else "—"

    def get_fieldsets(self, request, obj=None):
        """The callback and call-summary URLs are those posts' only credential: shown only to those who may change
        the account."""
        fieldsets = super().get_fieldsets(request, obj)
        if self.has_change_permission(request, obj):
            return fieldsets
        secret = {"callback_url", "cdr_url"}
        return [(name, options) for name, options in fieldsets if not secret & set(options["fields"])]


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "account",
        "columns",
        "phone_region",
        "check_duplicate",
        "skip_existing",
        "is_active",
        "ok",
        "progress",
    ]
    list_filter = ["is_active", "account"]
    list_select_related = ["account"]
    search_fields = ["name"]
    readonly_fields = ["progress", "outcomes", "problem", "problem_at", "created_at", "updated_at"]

    actions = [push_new_leads, redial_campaign_leads]

    def has_push_permission(self, request):
        return request.user.has_perm("campaigns.push_lead")

    def get_urls(self):
        progress = path(
            "<int:campaign_id>/progress/",
            self.admin_site.admin_view(self.progress_view),
            name="campaigns_campaign_progress",
        )
        return [progress, *super().get_urls()]

    def progress_view(self, request, campaign_id: int):
        campaign = get_object_or_404(Campaign.objects.select_related("account"), pk=campaign_id)
        if not self.has_view_permission(request, campaign):
            raise PermissionDenied
        progress = campaign_progress(campaign=campaign)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Push progress — {campaign}",
            "campaign": campaign,
            "progress": progress,
            "refresh": bool(progress["batches"]["waiting"] or progress["batches"]["sending now / next"]),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/campaigns/campaign/progress.html", context)

    @admin.display(description="push progress")
    def progress(self, obj):
        if obj is None or not obj.pk:
            return "—"
        return format_html('<a href="{}">progress</a>', reverse("admin:campaigns_campaign_progress", args=[obj.pk]))

    @admin.display(description="call outcomes")
    def outcomes(self, obj):
        return outcomes_panel(campaign=obj) if obj is not None and obj.pk else "—"

    @admin.display(description="column map")
    def columns(self, obj):
        return ", ".join(obj.column_map or [])

    @admin.display(description="OK", boolean=True)
    def ok(self, obj):
        return not obj.problem

    def save_model(self, request, obj, form, change):
        campaign_upsert(
            campaign=obj,
            name=obj.name,
            account=obj.account,
            column_map=obj.column_map,
            phone_region=obj.phone_region,
            check_duplicate=obj.check_duplicate,
            skip_existing=obj.skip_existing,
            start_after_upload=obj.start_after_upload,
        )


class LeadStatusFilter(admin.SimpleListFilter):
    """Static choices: a list_filter on a plain field would run SELECT DISTINCT over the whole table."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return Lead.Status.choices

    def queryset(self, request, queryset):
        return queryset.filter(status=self.value()) if self.value() else queryset


class LeadReasonFilter(admin.SimpleListFilter):
    """The most common reasons among recent leads that did not reach the dialer, so an operator can take them on
    one cause at a time. Counting reasons over every failed lead of a million-lead table would cost each page
    view ~80 ms; the most recent RECENT of them, read backwards along the primary key, cost ~2 ms."""

    title = "reason"
    parameter_name = "reason"
    SHOWN = 15
    RECENT = 5000

    def lookups(self, request, model_admin):
        recent = (
            Lead.objects.filter(status__in=PROBLEM_STATUSES)
            .exclude(status_reason="")
            .order_by("-pk")
            .values_list("status_reason", flat=True)[: self.RECENT]
        )
        return [(reason, reason[:80]) for reason, _ in Counter(recent).most_common(self.SHOWN)]

    def queryset(self, request, queryset):
        return queryset.filter(status_reason=self.value()) if self.value() else queryset


PROBLEM_STATUSES = (Lead.Status.FAILED, Lead.Status.INVALID, Lead.Status.UNCONFIRMED)


class LeadForm(forms.ModelForm):
    """A lead entered or edited by hand: its number normalised and checked for duplicates, as an import does."""

    class Meta:
        model = Lead
        fields = ["campaign", "phone_number", "name", "priority", "expiry_date", "agent_id", "skill", "extra"]

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("campaign") and cleaned.get("phone_number"):
            try:
                cleaned["phone_number"] = lead_phone_check(
                    campaign=cleaned["campaign"], phone_number=cleaned["phone_number"], lead_id=self.instance.pk
                )
            except ValidationError as exc:
                self.add_error(None, exc)
        return cleaned

    def validate_unique(self):
        """lead_phone_check has said it in words; the constraint would repeat it in the model's."""


@admin.register(Lead)
class LeadAdmin(LeadImportExportMixin, admin.ModelAdmin):
    form = LeadForm
    actions = [push_selected_leads, redial_selected_leads]
    inlines = [CallInline]

    def has_push_permission(self, request):
        return request.user.has_perm("campaigns.push_lead")

    list_display = [
        "phone_number",
        "name",
        "campaign",
        "status",
        "status_reason",
        "upload_transaction",
        "call_attempts",
        "last_dial_status",
        "last_disposition",
        "last_call_at",
        "created_at",
    ]
    list_filter = [
        LeadStatusFilter,
        LeadReasonFilter,
        LastDialStatusFilter,
        LastDispositionFilter,
        "campaign",
        "source",
    ]
    list_select_related = ["campaign", "upload_transaction"]
    search_fields = ["=phone_number", "name__istartswith"]
    search_help_text = "A phone number in any common form, or the start of a name."
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    raw_id_fields = ["campaign", "upload_transaction", "lead_import"]
    readonly_fields = [
        "status",
        "status_reason",
        "upload_transaction",
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
    ]

    def get_search_results(self, request, queryset, search_term):
        """A phone search matches the normalised number exactly, using the index, whatever form it was typed in."""
        term = search_term.strip()
        if term and any(c.isdigit() for c in term):
            try:
                return queryset.filter(phone_number=normalize_phone(term, "IN")), False
            except PhoneError:
                pass
        return super().get_search_results(request, queryset, search_term)


@admin.register(LeadImport)
class LeadImportAdmin(admin.ModelAdmin):
    """Imports are made by the lead Import view or the CLI and never edited; an import is undone, not deleted,
    so its leads keep tracing back to it."""

    change_form_template = "admin/campaigns/leadimport/change_form.html"
    list_display = [
        "file_name",
        "campaign",
        "state",
        "progress",
        "imported",
        "updated",
        "duplicates",
        "rejected",
        "warnings",
        "created_by",
        "created_at",
    ]
    list_filter = ["state", "campaign"]
    list_select_related = ["campaign", "created_by"]
    fields = [
        "file_name",
        "file_format",
        "campaign",
        "state",
        "progress",
        "message",
        ("rows", "imported", "updated", "duplicates", "rejected", "warnings"),
        "created_by",
        ("created_at", "started_at", "finished_at"),
    ]
    readonly_fields = [name for line in fields for name in ((line,) if isinstance(line, str) else line)]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="progress")
    def progress(self, obj):
        done = obj.rows if obj.state == LeadImport.State.COMPLETED else min(obj.rows_processed, obj.rows)
        percent = round(100 * done / obj.rows) if obj.rows else 100
        return format_html('<progress max="100" value="{}"></progress> {}%', percent, percent)

    def get_urls(self):
        return [
            path(
                "<int:object_id>/rejected/",
                self.admin_site.admin_view(self.rejected_view),
                name="campaigns_leadimport_rejected",
            ),
            path("<int:object_id>/undo/", self.admin_site.admin_view(self.undo_view), name="campaigns_leadimport_undo"),
            path(
                "<int:object_id>/resume/",
                self.admin_site.admin_view(self.resume_view),
                name="campaigns_leadimport_resume",
            ),
            path(
                "<int:object_id>/confirm/",
                self.admin_site.admin_view(self.confirm_view),
                name="campaigns_leadimport_confirm",
            ),
            *super().get_urls(),
        ]

    def rejected_view(self, request, object_id):
        """The rejected rows with line and reason, served through the admin: MEDIA is not public."""
        lead_import = get_object_or_404(LeadImport, pk=object_id)
        if not self.has_view_permission(request, lead_import):
            raise PermissionDenied
        if not lead_import.rejected_file:
            raise Http404("This import rejected no rows.")
        name = os.path.basename(lead_import.rejected_file.name)
        return FileResponse(lead_import.rejected_file.open("rb"), as_attachment=True, filename=name)

    @staticmethod
    def _import_to_post(request, object_id) -> LeadImport:
        """The import a POST-only action (resume, confirm) runs: a GET, or a user who may not import, is refused."""
        lead_import = get_object_or_404(LeadImport.objects.select_related("campaign"), pk=object_id)
        if request.method != "POST" or not request.user.has_perm("campaigns.import_lead"):
            raise PermissionDenied
        return lead_import

    def resume_view(self, request, object_id):
        """POST only: runs again an import a crash stopped; rows it already wrote count as imported."""
        lead_import = self._import_to_post(request, object_id)
        try:
            background = lead_import_resume(lead_import=lead_import)
        except (LeadImportError, ImportFileError) as exc:
            self.message_user(request, f"Not resumed: {exc}", messages.ERROR)
        except Exception:
            logger.exception("resuming import %s failed", lead_import.pk)
            lead_import.refresh_from_db()
            self.message_user(request, f"The import stopped again: {lead_import.message}", messages.ERROR)
        else:
            done = "resumed in the background" if background else f"resumed: {lead_import.message}"
            self.message_user(request, f"Import {done}", messages.SUCCESS)
        return redirect(reverse("admin:campaigns_leadimport_change", args=[lead_import.pk]))

    def confirm_view(self, request, object_id):
        """POST only: the operator confirms a background preview; the import runs like any confirmed one."""
        lead_import = self._import_to_post(request, object_id)
        try:
            background = lead_import_confirm(lead_import=lead_import)
        except (LeadImportError, ImportFileError) as exc:
            self.message_user(request, f"Not imported: {exc}", messages.ERROR)
        else:
            lead_import.refresh_from_db()
            done = "The import runs in the background" if background else f"Imported: {lead_import.message}"
            self.message_user(request, done, messages.SUCCESS)
        return redirect(reverse("admin:campaigns_leadimport_change", args=[lead_import.pk]))

    def undo_view(self, request, object_id):
        lead_import = get_object_or_404(LeadImport.objects.select_related("campaign"), pk=object_id)
        if not request.user.has_perms(["campaigns.import_lead", "campaigns.delete_lead"]):
            raise PermissionDenied
        change_url = reverse("admin:campaigns_leadimport_change", args=[lead_import.pk])
        if request.method == "POST":
            try:
                deleted = lead_import_undo(lead_import=lead_import)
            except LeadImportError as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                self.message_user(request, f"Import undone: {deleted} leads deleted.", messages.SUCCESS)
            return redirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "title": "Undo this import?",
            "opts": self.opts,
            "original": lead_import,
            "leads": lead_import.leads.count(),
            "change_url": change_url,
        }
        return TemplateResponse(request, "admin/campaigns/leadimport/undo_confirmation.html", context)
