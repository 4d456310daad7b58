"""What happened when CloudAgent dialled a lead: one `Call` per dial, built from the call summaries CloudAgent
posts to our "URL to Push" (docs/cloudagent-call-summary.md), and every post kept as it came, minus the API key."""

from django.db import models
from django.utils import timezone


class CallMatch(models.TextChoices):
    PHONE = "phone", "by phone number"
    UUI = "uui", "by UUI (the lead's name)"
    NONE = "none", "unmatched"


class Call(models.Model):
    """One dial, keyed by CloudAgent's monitorUCID within the account: a later post for the same call (the
    delayed one carrying the disposition) fills in this row instead of making another."""

    Match = CallMatch

    account = models.ForeignKey("campaigns.CloudAgentAccount", on_delete=models.PROTECT, related_name="calls")
    campaign = models.ForeignKey(
        "campaigns.Campaign", null=True, blank=True, on_delete=models.SET_NULL, related_name="calls"
    )
    lead = models.ForeignKey("campaigns.Lead", null=True, blank=True, on_delete=models.SET_NULL, related_name="calls")
    match = models.CharField(max_length=5, choices=Match.choices, default=Match.NONE)
    monitor_ucid = models.CharField("monitorUCID", max_length=64)
    campaign_name = models.CharField(max_length=200, blank=True)
    phone_number = models.CharField(max_length=20, blank=True, help_text="CallerID normalised to E.164, if valid.")
    caller_id = models.CharField("CallerID", max_length=40, blank=True)
    dialed_number = models.CharField(max_length=40, blank=True)
    uui = models.CharField("UUI", max_length=200, blank=True)
    call_type = models.CharField(max_length=40, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    time_to_answer_seconds = models.PositiveIntegerField(null=True, blank=True)
    duration_seconds = models.PositiveIntegerField(null=True, blank=True)
    dial_status = models.CharField(max_length=40, blank=True)
    customer_status = models.CharField(max_length=40, blank=True)
    agent_status = models.CharField(max_length=40, blank=True)
    agent_id = models.CharField(max_length=100, blank=True)
    agent_name = models.CharField(max_length=200, blank=True)
    disposition = models.CharField(max_length=200, blank=True)
    comments = models.TextField(blank=True)
    audio_file = models.URLField("recording", max_length=2000, blank=True)
    hangup_by = models.CharField(max_length=40, blank=True)
    transfer_type = models.CharField(max_length=40, blank=True)
    skill = models.CharField(max_length=100, blank=True)
    did = models.CharField("DID", max_length=40, blank=True)
    summary = models.JSONField(default=dict, blank=True, help_text="The latest summary's fields, without Apikey.")
    posts = models.PositiveIntegerField(default=1, help_text="Summaries that changed this call (duplicates do not).")
    received_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "monitor_ucid"], name="call_unique_ucid_per_account"),
        ]
        indexes = [
            models.Index(fields=["campaign", "started_at"], name="call_campaign_started"),
            models.Index(fields=["campaign", "dial_status"], name="call_campaign_dial_status"),
            models.Index(fields=["lead", "started_at"], name="call_lead_started"),
            models.Index(fields=["match"], name="call_match"),
        ]

    def __str__(self) -> str:
        return f"call {self.monitor_ucid} ({self.dial_status or '?'})"

    @property
    def moment(self):
        """When the call happened, as far as we know: CloudAgent's start time, else when its summary came."""
        return self.started_at or self.received_at


class CallSummaryPost(models.Model):
    """One post to the call-summary webhook, stored before it is parsed (with the Apikey already removed), so no
    summary is lost when applying it breaks on our side: the sweep applies `received` ones later."""

    class State(models.TextChoices):
        RECEIVED = "received", "received (not applied yet)"
        APPLIED = "applied", "applied"
        DUPLICATE = "duplicate", "duplicate (changed nothing)"
        INVALID = "invalid", "invalid (malformed)"

    account = models.ForeignKey(
        "campaigns.CloudAgentAccount", null=True, blank=True, on_delete=models.SET_NULL, related_name="call_posts"
    )
    call = models.ForeignKey(Call, null=True, blank=True, on_delete=models.SET_NULL, related_name="posts_received")
    state = models.CharField(max_length=10, choices=State.choices, default=State.RECEIVED)
    body = models.TextField(blank=True, help_text="As posted, Apikey removed.")
    content_type = models.CharField(max_length=200, blank=True)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    error = models.TextField(blank=True)
    received_at = models.DateTimeField(default=timezone.now, editable=False)
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["state", "received_at"], name="call_post_state_received")]

    def __str__(self) -> str:
        return f"call summary post #{self.pk} ({self.state})"
