"""Upload transactions and raw callbacks: what was sent to CloudAgent, what it answered, and what became of each
lead, so an operator can tell for any lead whether it reached the dialer and, if not, why."""

import json
from pathlib import PurePosixPath

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import FileResponse, Http404
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import mark_safe

from campaigns.admin import report_push
from campaigns.models import Lead
from cloudagent.callbacks import callback_body_parse
from cloudagent.errors import CallbackInvalid
from leadhub.logfilters import redact_secret_paths
from uploads.models import CallbackEvent, UploadTransaction
from uploads.selectors import callback_overdue_cutoff, upload_transaction_is_overdue, upload_transactions_overdue
from uploads.services import callback_event_apply, upload_transactions_repush


def _pretty_json(value, *, hide: str = "") -> str:
    """JSON as an escaped <pre> block; `hide` (the account's callback secret) never reaches the page, nor does a
    callback URL's secret (a rotated one stays valid for a while)."""
    if value in (None, "", {}, []):
        return "—"
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
    if hide:
        text = text.replace(hide, "[secret]")
    text = redact_secret_paths(text, "[secret]")
    return format_html("<pre style='white-space: pre-wrap; margin: 0'>{}</pre>", text)


class OverdueFilter(admin.SimpleListFilter):
    title = "callback overdue"
    parameter_name = "overdue"

    def lookups(self, request, model_admin):
        return [("yes", "overdue"), ("no", "not overdue")]

    def queryset(self, request, queryset):
        overdue = upload_transactions_overdue().values("pk")
        if self.value() == "yes":
            return queryset.filter(pk__in=overdue)
        if self.value() == "no":
            return queryset.exclude(pk__in=overdue)
        return queryset


class AttentionFilter(admin.SimpleListFilter):
    title = "needs attention"
    parameter_name = "attention"

    def lookups(self, request, model_admin):
        return [("yes", "yes"), ("no", "no")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.exclude(attention="")
        if self.value() == "no":
            return queryset.filter(attention="")
        return queryset


class CallbackEventInline(admin.TabularInline):
    """Every callback CloudAgent sent for the transaction, duplicates and late ones included, as received."""

    model = CallbackEvent
    fk_name = "upload_transaction"
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ["id"]
    fields = ["received_at", "state", "error", "remote_addr", "content_type", "body_start"]
    readonly_fields = fields
    verbose_name_plural = "callbacks received"

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="body (start)")
    def body_start(self, obj):
        return format_html("<code>{}</code>", obj.body[:300] + ("…" if len(obj.body) > 300 else ""))


@admin.action(
    description="Push the leads of these transactions again (failed, unconfirmed, overdue)", permissions=["repush"]
)
def repush_transactions(modeladmin, request, queryset):
    report_push(modeladmin, request, upload_transactions_repush(batches=queryset, user=request.user))


@admin.register(UploadTransaction)
class UploadTransactionAdmin(admin.ModelAdmin):
    actions = [repush_transactions]
    list_display = [
        "__str__",
        "campaign",
        "state",
        "row_count",
        "attempts",
        "numbers_processed",
        "numbers_not_processed",
        "overdue",
        "attention",
        "sent_at",
        "finished_at",
    ]
    list_filter = ["state", OverdueFilter, AttentionFilter, "campaign"]
    list_select_related = ["campaign"]
    search_fields = ["=transaction_id"]
    search_help_text = "CloudAgent's transactionId, exactly."
    inlines = [CallbackEventInline]
    fieldsets = [
        (None, {"fields": ["transaction_id", "campaign", "state", "attention", "overdue", "leads_by_status"]}),
        (
            "Request sent",
            {
                "fields": [
                    "options_sent",
                    "row_count",
                    "attempts",
                    "ambiguous_attempts",
                    "rate_limited",
                    "last_error",
                    "response_received",
                    "pushed_by",
                    "not_before",
                    "claimed_at",
                    "sent_at",
                ]
            },
        ),
        (
            "CloudAgent's result",
            {
                "fields": [
                    "total_uploaded",
                    "numbers_processed",
                    "numbers_not_processed",
                    "provider_started_at",
                    "provider_finished_at",
                    "finished_at",
                    "callback_applied",
                ]
            },
        ),
        ("Failed file", {"fields": ["failed_file_url", "failed_file_download"]}),
        ("Record", {"fields": ["created_at", "updated_at"]}),
    ]
    readonly_fields = [
        *(f.name for f in UploadTransaction._meta.fields),
        "overdue",
        "leads_by_status",
        "options_sent",
        "response_received",
        "callback_applied",
        "failed_file_download",
    ]

    def get_queryset(self, request):
        # The rows a pending batch keeps for its send (tens of KB each) are of no use on a page.
        return super().get_queryset(request).defer("built_rows")

    def has_add_permission(self, request):
        return False  # only the push creates transactions

    def has_change_permission(self, request, obj=None):
        return False  # a record of what was sent and answered: never edited

    def has_delete_permission(self, request, obj=None):
        return False

    def has_repush_permission(self, request):
        return request.user.has_perms(["uploads.repush_uploadtransaction", "campaigns.push_lead"])

    def get_urls(self):
        view = self.admin_site.admin_view(self.failed_file_view)
        return [
            path("<path:object_id>/failed-file/", view, name="uploads_uploadtransaction_failed_file"),
            *super().get_urls(),
        ]

    def failed_file_view(self, request, object_id):
        """Serve the stored copy through the admin: media files are not public, and the provider's link dies."""
        upload_transaction = self.get_object(request, object_id)
        if upload_transaction is None or not upload_transaction.failed_file:
            raise Http404("No stored failed file.")
        if not self.has_view_permission(request, upload_transaction):
            raise PermissionDenied
        name = PurePosixPath(upload_transaction.failed_file.name).name
        return FileResponse(upload_transaction.failed_file.open("rb"), as_attachment=True, filename=name)

    @admin.display(description="callback overdue", boolean=True)
    def overdue(self, obj):
        return upload_transaction_is_overdue(obj, cutoff=callback_overdue_cutoff())

    @admin.display(description="leads")
    def leads_by_status(self, obj):
        """Counts by status, each a link to the Lead changelist filtered to this transaction."""
        counts = obj.leads.order_by().values_list("status").annotate(n=Count("id"))
        labels = dict(Lead.Status.choices)
        base = reverse("admin:campaigns_lead_changelist")
        rows = [
            (f"{base}?{urlencode({'upload_transaction__id__exact': obj.pk, 'status': status})}", labels[status], n)
            for status, n in sorted(counts)
        ]
        if not rows:
            return "—"
        everything = f"{base}?{urlencode({'upload_transaction__id__exact': obj.pk})}"
        return format_html(
            "{}<br><a href='{}'>all leads of this transaction</a>",
            format_html_join(mark_safe("<br>"), "<a href='{}'>{}</a>: {}", rows),
            everything,
        )

    @admin.display(description="options sent")
    def options_sent(self, obj):
        return _pretty_json(obj.options, hide=obj.campaign.account.callback_secret)

    @admin.display(description="synchronous answer")
    def response_received(self, obj):
        return _pretty_json(obj.response)

    @admin.display(description="callback applied (its data object)")
    def callback_applied(self, obj):
        return _pretty_json(obj.callback)

    @admin.display(description="stored copy")
    def failed_file_download(self, obj):
        if not obj.failed_file:
            return "—"
        url = reverse("admin:uploads_uploadtransaction_failed_file", args=[obj.pk])
        return format_html("<a href='{}'>{}</a>", url, PurePosixPath(obj.failed_file.name).name)


@admin.action(description="Apply the selected callbacks again (waiting or received ones)", permissions=["apply"])
def apply_callbacks(modeladmin, request, queryset):
    pending = queryset.filter(state__in=[CallbackEvent.State.RECEIVED, CallbackEvent.State.WAITING])
    states: dict[str, int] = {}
    for event in pending.order_by("id"):
        state = callback_event_apply(event=event).state
        states[state] = states.get(state, 0) + 1
    summary = ", ".join(f"{count} {state}" for state, count in sorted(states.items())) or "nothing to apply"
    modeladmin.message_user(request, f"Callbacks: {summary}.")


@admin.register(CallbackEvent)
class CallbackEventAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "received_at",
        "account",
        "transaction_id",
        "upload_transaction",
        "state",
        "error",
        "remote_addr",
        "applied_at",
    ]
    list_filter = ["state", "account"]
    list_select_related = ["account", "upload_transaction"]
    search_fields = ["=transaction_id"]
    search_help_text = "CloudAgent's transactionId, exactly."
    actions = [apply_callbacks]
    fields = [
        "account",
        "upload_transaction",
        "transaction_id",
        "state",
        "error",
        "received_at",
        "applied_at",
        "remote_addr",
        "content_type",
        "body_as_received",
        "data_read",
    ]
    readonly_fields = [*(f.name for f in CallbackEvent._meta.fields), "body_as_received", "data_read"]

    def has_add_permission(self, request):
        return False  # only CloudAgent creates callbacks

    def has_change_permission(self, request, obj=None):
        return False  # the provider's answer as it came: never edited

    def has_delete_permission(self, request, obj=None):
        return False

    def has_apply_permission(self, request):
        return request.user.has_perm("uploads.apply_callbackevent")

    @admin.display(description="body, as received")
    def body_as_received(self, obj):
        return format_html("<pre style='white-space: pre-wrap; margin: 0'>{}</pre>", obj.body or "(empty)")

    @admin.display(description="data, as read")
    def data_read(self, obj):
        try:
            return _pretty_json(
                callback_body_parse(
                    body=obj.body, content_type=obj.content_type, time_zone=settings.CLOUDAGENT_TIME_ZONE
                ).raw
            )
        except CallbackInvalid as exc:
            return f"unreadable: {exc}"
