"""The product's face: accounts, campaigns and leads, built to stay fast with millions of leads."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connections, models
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.functional import cached_property
from django.utils.html import format_html

from campaigns.models import Campaign, CloudAgentAccount, Lead, LeadImport
from campaigns.normalize import PhoneError, normalize_phone


def report_push(modeladmin, request, summary) -> None:
    """Tell the operator at once what the push will do: leads, batches, ETA, and everything left out."""
    if summary.leads:
        modeladmin.message_user(
            request,
            f"Queued {summary.leads} lead(s) in {summary.batches} batch(es) for CloudAgent; "
            f"the rate limit puts the last batch about {summary.eta_seconds:.0f} s from now.",
            messages.SUCCESS,
        )
    if summary.invalid:
        modeladmin.message_user(
            request,
            f"{summary.invalid} lead(s) failed our checks and are now 'invalid' (see the reason); fix, then push.",
            messages.WARNING,
        )
    if summary.not_pushable:
        left = ", ".join(f"{count} {status}" for status, count in sorted(summary.not_pushable.items()))
        modeladmin.message_user(request, f"Not pushed, because of their status: {left}.", messages.WARNING)
    if not (summary.leads or summary.invalid or summary.not_pushable):
        modeladmin.message_user(request, "There was nothing to push.", messages.INFO)


@admin.action(description="Push selected leads to CloudAgent", permissions=["change"])
def push_selected_leads(modeladmin, request, queryset):
    from uploads.services import leads_push

    report_push(modeladmin, request, leads_push(leads=queryset, user=request.user))


@admin.action(description="Push all new leads to CloudAgent", permissions=["change"])
def push_new_leads(modeladmin, request, queryset):
    from uploads.services import campaign_push_new

    for campaign in queryset:
        report_push(modeladmin, request, campaign_push_new(campaign=campaign, user=request.user))


class EstimatedCountPaginator(Paginator):
    """An unfiltered changelist on PostgreSQL counts from the planner's estimate: COUNT(*) over millions of
    leads costs most of a second (perf-notes.md, Admin at 5M leads)."""

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
        if key:
            return key
        if self.instance.pk:
            return self.instance.api_key
        raise forms.ValidationError("An API key is required.")


@admin.register(CloudAgentAccount)
class CloudAgentAccountAdmin(admin.ModelAdmin):
    form = AccountForm
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = ["name", "user_name", "api_key_masked", "base_url", "is_active", "problem_flag"]
    list_filter = ["is_active"]
    search_fields = ["name", "user_name"]
    readonly_fields = ["api_key_masked", "callback_url", "problem", "problem_at", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "user_name", "api_key", "api_key_masked", "base_url", "is_active"]}),
        ("CloudAgent callback", {"fields": ["callback_url"]}),
        ("Health", {"fields": ["problem", "problem_at", "created_at", "updated_at"]}),
    ]

    @admin.display(description="API key")
    def api_key_masked(self, obj):
        return obj.masked_api_key

    @admin.display(description="problem", boolean=True)
    def problem_flag(self, obj):
        return not obj.problem

    @admin.display(description="callback URL")
    def callback_url(self, obj):
        from uploads.services import callback_url_for

        return callback_url_for(obj) if obj.pk else "—"


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
    ]
    list_filter = ["is_active", "account"]
    list_select_related = ["account"]
    search_fields = ["name"]
    readonly_fields = ["problem", "problem_at", "created_at", "updated_at"]

    actions = [push_new_leads]

    def get_urls(self):
        progress = path(
            "<int:campaign_id>/progress/",
            self.admin_site.admin_view(self.progress_view),
            name="campaigns_campaign_progress",
        )
        return [progress, *super().get_urls()]

    def progress_view(self, request, campaign_id: int):
        from uploads.selectors import campaign_progress

        campaign = get_object_or_404(Campaign.objects.select_related("account"), pk=campaign_id)
        if not self.has_view_permission(request, campaign):
            raise PermissionDenied
        progress = campaign_progress(campaign=campaign)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Push progress — {campaign}",
            "campaign": campaign,
            "progress": progress,
            "refresh": bool(progress["batches"]["waiting"] or progress["batches"]["in flight"]),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/campaigns/campaign/progress.html", context)

    @admin.display(description="push progress")
    def progress(self, obj):
        return format_html('<a href="{}">progress</a>', reverse("admin:campaigns_campaign_progress", args=[obj.pk]))

    @admin.display(description="column map")
    def columns(self, obj):
        return ", ".join(obj.column_map or [])

    @admin.display(description="OK", boolean=True)
    def ok(self, obj):
        return not obj.problem


class LeadStatusFilter(admin.SimpleListFilter):
    """Static choices: a list_filter on a plain field would run SELECT DISTINCT over the whole table."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return Lead.Status.choices

    def queryset(self, request, queryset):
        return queryset.filter(status=self.value()) if self.value() else queryset


@admin.register(Lead)
class LeadAdmin(admin.ModelAdmin):
    actions = [push_selected_leads]
    list_display = [
        "phone_number",
        "name",
        "campaign",
        "status",
        "status_reason",
        "upload_transaction",
        "created_at",
    ]
    list_filter = [LeadStatusFilter, "campaign", "source"]
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
    list_display = [
        "file_name",
        "campaign",
        "state",
        "rows",
        "imported",
        "duplicates",
        "rejected",
        "created_by",
        "created_at",
    ]
    list_filter = ["state", "campaign"]
    list_select_related = ["campaign", "created_by"]
    readonly_fields = [f.name for f in LeadImport._meta.fields]
