"""The product's face: accounts, campaigns and leads, built to stay fast with millions of leads."""

from django import forms
from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connections, models
from django.utils.functional import cached_property

from campaigns.models import Campaign, CloudAgentAccount, Lead, LeadImport
from campaigns.normalize import PhoneError, normalize_phone


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
