"""Upload transactions and raw callbacks: what was sent to CloudAgent, and what it answered."""

from django.contrib import admin

from uploads.models import CallbackEvent, UploadTransaction


@admin.register(UploadTransaction)
class UploadTransactionAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "campaign",
        "state",
        "row_count",
        "attempts",
        "numbers_processed",
        "numbers_not_processed",
        "attention",
        "created_at",
    ]
    list_filter = ["state", "campaign"]
    list_select_related = ["campaign"]
    search_fields = ["=transaction_id"]
    readonly_fields = [f.name for f in UploadTransaction._meta.fields]


@admin.register(CallbackEvent)
class CallbackEventAdmin(admin.ModelAdmin):
    list_display = ["id", "transaction_id", "state", "account", "remote_addr", "received_at", "applied_at"]
    list_filter = ["state"]
    search_fields = ["=transaction_id"]
    readonly_fields = [f.name for f in CallbackEvent._meta.fields]
