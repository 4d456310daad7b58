"""Upload transactions (one CloudAgent request and its fate) and the raw callbacks CloudAgent sends back."""

from django.conf import settings
from django.db import models
from django.utils import timezone


class TransactionState(models.TextChoices):
    """Code names it UploadTransaction.State; it is defined out here only because the CHECK constraint in the
    model's Meta cannot see a class nested in the model."""

    PENDING = "pending", "pending (waiting for a send slot)"
    SENDING = "sending", "sending (a worker holds it)"
    QUEUED = "queued", "queued (CloudAgent gave a transactionId)"
    COMPLETED = "completed", "completed (callback Success)"
    FAILED = "failed", "failed (callback Fail)"
    ERROR = "error", "error (the API refused the request)"


class UploadTransaction(models.Model):
    """One Add Campaign Bulk Data request: at most CLOUDAGENT_BATCH_SIZE leads, sent at most once unless its
    outcome was ambiguous. Only services change `state`, each checking the current state in the same UPDATE."""

    State = TransactionState
    FINISHED_STATES = (State.COMPLETED, State.FAILED, State.ERROR)

    campaign = models.ForeignKey("campaigns.Campaign", on_delete=models.PROTECT, related_name="upload_transactions")
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    transaction_id = models.CharField("CloudAgent transactionId", max_length=40, unique=True, null=True, blank=True)
    options = models.JSONField(default=dict, blank=True, help_text="Request fields sent besides the data.")
    row_count = models.PositiveIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0, help_text="HTTP requests made for this batch.")
    ambiguous_attempts = models.PositiveIntegerField(
        default=0,
        help_text="Attempts whose outcome was unknown (timeout, dropped connection); re-sent with checkDuplicate.",
    )
    rate_limited = models.PositiveIntegerField(default=0, help_text="Rate-limit answers received for this batch.")
    last_error = models.TextField(blank=True)
    built_rows = models.TextField(
        blank=True,
        editable=False,
        help_text="The data rows as built when the batch was cut (JSON), sent as they are unless a lead or the "
        "campaign changed since; emptied once the batch is over.",
    )
    rows_built_at = models.DateTimeField(null=True, blank=True, editable=False)
    response = models.JSONField(null=True, blank=True, help_text="CloudAgent's synchronous answer.")
    callback = models.JSONField(null=True, blank=True, help_text="The callback applied (its data object).")
    total_uploaded = models.PositiveIntegerField(null=True, blank=True)
    numbers_processed = models.PositiveIntegerField(null=True, blank=True)
    numbers_not_processed = models.PositiveIntegerField(null=True, blank=True)
    failed_file_url = models.URLField(max_length=4000, blank=True)
    failed_file = models.FileField(upload_to="failed-files/%Y/%m/", blank=True)
    attention = models.CharField(
        max_length=500, blank=True, help_text="Why an operator should look at this transaction."
    )
    provider_started_at = models.DateTimeField(null=True, blank=True)
    provider_finished_at = models.DateTimeField(null=True, blank=True)
    pushed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    not_before = models.DateTimeField(null=True, blank=True, help_text="Earliest next attempt (back-off).")
    claimed_at = models.DateTimeField(null=True, blank=True, help_text="When a worker took it to send.")
    last_attempt_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="The pacer's (Redis) time of the latest request for it: seeds the pacer after Redis forgets.",
    )
    sent_at = models.DateTimeField(null=True, blank=True, help_text="When CloudAgent accepted it.")
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        permissions = [
            ("repush_uploadtransaction", "Can push a transaction's leads again"),
            ("manage_queues", "Can see and change the RQ job queues"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(state__in=TransactionState.values), name="upload_transaction_state_known"
            ),
        ]
        indexes = [
            models.Index(fields=["campaign", "state"], name="upload_tx_campaign_state"),
            models.Index(fields=["state", "claimed_at"], name="upload_tx_state_claimed"),
            models.Index(fields=["last_attempt_at"], name="upload_tx_last_attempt"),
        ]

    def __str__(self) -> str:
        return self.transaction_id or f"batch #{self.pk}"


class CallbackEvent(models.Model):
    """A callback exactly as it arrived, stored before it is parsed so no provider answer is ever lost."""

    class State(models.TextChoices):
        RECEIVED = "received", "received (not applied yet)"
        APPLIED = "applied", "applied"
        WAITING = "waiting", "waiting (transaction not known yet)"
        IGNORED = "ignored", "ignored (duplicate or stale)"
        INVALID = "invalid", "invalid (malformed)"

    account = models.ForeignKey(
        "campaigns.CloudAgentAccount",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="callbacks",
    )
    upload_transaction = models.ForeignKey(
        UploadTransaction, null=True, blank=True, on_delete=models.SET_NULL, related_name="callback_events"
    )
    transaction_id = models.CharField(max_length=40, blank=True, db_index=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.RECEIVED)
    body = models.TextField(blank=True)
    content_type = models.CharField(max_length=200, blank=True)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    error = models.TextField(blank=True)
    received_at = models.DateTimeField(default=timezone.now, editable=False)
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        permissions = [("apply_callbackevent", "Can apply stored callbacks again")]
        indexes = [models.Index(fields=["state", "transaction_id"], name="callback_state_tx")]

    def __str__(self) -> str:
        return f"callback {self.transaction_id or '?'} ({self.state})"


class PushRequest(models.Model):
    """A push too big to batch within the admin's or the CLI's request: the selection is written here (its lead
    ids in PushRequestLead) and the background job reads it by id, so no query is pickled into Redis and a job
    that outlives a deploy still reads what the operator chose."""

    class State(models.TextChoices):
        PENDING = "pending", "pending (waiting for a worker)"
        RUNNING = "running", "running (being cut into batches)"
        DONE = "done", "done"

    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    statuses = models.JSONField(default=list, help_text="Lead statuses the push takes; others are counted.")
    check_duplicate = models.BooleanField(default=False)
    redial = models.CharField(max_length=500, blank=True, help_text="Why these leads are dialled again, if they are.")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    summary = models.JSONField(null=True, blank=True, help_text="What the push did, once done.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"push request #{self.pk} ({self.state})"


class PushRequestLead(models.Model):
    """One lead of a PushRequest's selection. A plain id, not a foreign key: a lead deleted meanwhile simply
    drops out of the push, and writing a million of these takes no per-row constraint check."""

    push_request = models.ForeignKey(PushRequest, on_delete=models.CASCADE, related_name="leads")
    lead_id = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["push_request", "lead_id"], name="push_request_lead_unique"),
        ]

    def __str__(self) -> str:
        return f"lead {self.lead_id} of push request #{self.push_request_id}"


class DispatchNode(models.Model):
    """One running dispatch process, known by its heartbeat. Kept in the database, not Redis, so a Redis loss
    cannot make a live dispatcher look dead (its accounts would be taken over and its batch re-sent)."""

    name = models.CharField(max_length=200, unique=True, help_text="host:pid:random, unique per process start")
    host = models.CharField(max_length=200)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField(default=timezone.now)
    heartbeat_at = models.DateTimeField(default=timezone.now, db_index=True)
    accounts = models.PositiveIntegerField(default=0, help_text="Accounts it held at its last heartbeat.")
    problem = models.CharField(max_length=500, blank=True, help_text="Why it cannot dispatch now, if it cannot.")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class DispatchLease(models.Model):
    """Which dispatch process serves an account until when. Only the holder sends the account's batches; a
    lease not renewed lapses at `expires_at` (database time) and another process takes the account over,
    recovering the batches left `sending` first."""

    account = models.OneToOneField(
        "campaigns.CloudAgentAccount", primary_key=True, on_delete=models.CASCADE, related_name="dispatch_lease"
    )
    holder = models.CharField(max_length=200, blank=True)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.account_id} held by {self.holder or 'nobody'} until {self.expires_at}"
