"""Calls in the admin: the call list (unmatched ones a filter away), each lead's call history, the outcome charts
for a campaign and for the dashboard, and the "dial again" action."""

from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import Q
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from calls.models import Call, CallSummaryPost
from calls.selectors import outcome_statuses
from calls.services import leads_redial
from campaigns.models import Lead
from cloudagent.call_summary import DIAL_STATUSES

# --- dial again ----------------------------------------------------------------------------------------------


class RedialForm(forms.Form):
    outcomes = forms.MultipleChoiceField(
        label="Dial again the leads whose last call ended",
        widget=forms.CheckboxSelectMultiple,
        choices=[(status, status) for status in outcome_statuses()],
    )
    older_than_hours = forms.FloatField(
        label="and was more than this many hours ago", min_value=0, required=False, initial=4
    )


def _redial(modeladmin, request, leads):
    """Asks which outcomes to dial again, then pushes those leads with checkDuplicate=false."""
    form = RedialForm(request.POST if "apply" in request.POST else None)
    if "apply" in request.POST and form.is_valid():
        hours = form.cleaned_data["older_than_hours"]
        summary = leads_redial(
            leads=leads,
            outcomes=form.cleaned_data["outcomes"],
            older_than=timedelta(hours=hours) if hours else None,
            user=request.user,
        )
        if summary.leads or summary.background:
            modeladmin.message_user(
                request,
                f"Dialling again: {summary.leads} lead(s) in about {summary.batches} batch(es), sent with "
                f"checkDuplicate=false; the last batch is due in about {summary.eta_seconds:.0f} s.",
                messages.SUCCESS,
            )
        else:
            modeladmin.message_user(request, "No lead's last call matches that, or none is in the dialer.")
        if summary.not_pushable:
            left = ", ".join(f"{count} {status}" for status, count in sorted(summary.not_pushable.items()))
            modeladmin.message_user(request, f"Not pushed, because of their upload status: {left}.", messages.WARNING)
        return None
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": "Dial again",
        "opts": modeladmin.model._meta,
        "form": form,
        # The ids ticked on the page; with "select all" Django finds the leads again from the list's filters, so
        # a million of them never go into the form.
        "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "action": request.POST.get("action", ""),
        "select_across": request.POST.get("select_across", "0"),
    }
    return TemplateResponse(request, "admin/calls/redial.html", context)


@admin.action(description="Dial again (by last call outcome)", permissions=["push"])
def redial_selected_leads(modeladmin, request, queryset):
    return _redial(modeladmin, request, queryset)


@admin.action(description="Dial again the campaigns' leads (by last call outcome)", permissions=["push"])
def redial_campaign_leads(modeladmin, request, queryset):
    return _redial(modeladmin, request, Lead.objects.filter(campaign__in=queryset))


# --- lead list filters and the call history ---------------------------------------------------------------


class LastDialStatusFilter(admin.SimpleListFilter):
    """Static choices: a filter on a plain column would run SELECT DISTINCT over every lead."""

    title = "last dial status"
    parameter_name = "last_dial"

    def lookups(self, request, model_admin):
        return [("none", "never dialled"), *((status, status) for status in outcome_statuses())]

    def queryset(self, request, queryset):
        if self.value() == "none":
            return queryset.filter(call_attempts=0)
        if self.value():
            return queryset.filter(Q(last_dial_status=self.value()) | Q(last_customer_status=self.value()))
        return queryset


class LastDispositionFilter(admin.SimpleListFilter):
    """The dispositions of the most recent calls: counting them over every lead would cost each page view."""

    title = "last disposition"
    parameter_name = "last_disposition"
    RECENT = 5000

    def lookups(self, request, model_admin):
        recent = Call.objects.exclude(disposition="").order_by("-pk").values_list("disposition", flat=True)
        return [(name, name) for name in sorted(set(recent[: self.RECENT]))[:30]]

    def queryset(self, request, queryset):
        return queryset.filter(last_disposition=self.value()) if self.value() else queryset


class CallInline(admin.TabularInline):
    """A lead's call history, newest first; calls are CloudAgent's record, never edited here."""

    model = Call
    fk_name = "lead"
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ["-started_at", "-id"]
    fields = [
        "started_at",
        "dial_status",
        "customer_status",
        "agent_status",
        "disposition",
        "duration_seconds",
        "agent_name",
        "recording",
        "monitor_ucid",
    ]
    readonly_fields = fields
    verbose_name_plural = "call history"

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="recording")
    def recording(self, obj):
        return format_html('<a href="{}" rel="noreferrer">listen</a>', obj.audio_file) if obj.audio_file else "—"


# --- the call list ---------------------------------------------------------------------------------------------


class CallMatchFilter(admin.SimpleListFilter):
    title = "matched to a lead"
    parameter_name = "match"

    def lookups(self, request, model_admin):
        return [("unmatched", "unmatched"), *((value, label) for value, label in Call.Match.choices if value != "none")]

    def queryset(self, request, queryset):
        if self.value() == "unmatched":
            return queryset.filter(lead__isnull=True)
        return queryset.filter(match=self.value()) if self.value() else queryset


class DialStatusFilter(admin.SimpleListFilter):
    title = "dial status"
    parameter_name = "dial_status"

    def lookups(self, request, model_admin):
        return [(status, status) for status in DIAL_STATUSES]

    def queryset(self, request, queryset):
        return queryset.filter(dial_status=self.value()) if self.value() else queryset


@admin.register(Call)
class CallAdmin(admin.ModelAdmin):
    list_display = [
        "started_at",
        "campaign",
        "lead_link",
        "caller_id",
        "dial_status",
        "customer_status",
        "disposition",
        "duration_seconds",
        "agent_name",
        "match",
        "recording",
    ]
    list_filter = [CallMatchFilter, DialStatusFilter, "campaign"]
    list_select_related = ["campaign", "lead"]
    search_fields = ["=monitor_ucid", "=caller_id", "=phone_number", "=uui", "=agent_id"]
    search_help_text = "A monitorUCID, a number as CloudAgent wrote it or in E.164, a UUI or an agent id, exactly."
    show_full_result_count = False
    readonly_fields = [field.name for field in Call._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="lead")
    def lead_link(self, obj):
        if obj.lead_id is None:
            return "unmatched"
        return format_html('<a href="{}">{}</a>', reverse("admin:campaigns_lead_change", args=[obj.lead_id]), obj.lead)

    @admin.display(description="recording")
    def recording(self, obj):
        return format_html('<a href="{}" rel="noreferrer">listen</a>', obj.audio_file) if obj.audio_file else "—"


@admin.register(CallSummaryPost)
class CallSummaryPostAdmin(admin.ModelAdmin):
    """Every post as it came (its Apikey removed): what to look at when a call is missing or looks wrong."""

    list_display = ["received_at", "account", "state", "call", "error", "remote_addr"]
    list_filter = ["state", "account"]
    list_select_related = ["account", "call"]
    show_full_result_count = False
    readonly_fields = [field.name for field in CallSummaryPost._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
