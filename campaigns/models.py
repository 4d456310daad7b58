"""Accounts, campaigns and leads: what leadhub dials through CloudAgent, and each lead's life cycle."""

import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from leadhub.fields import EncryptedTextField

DOMESTIC_BASE_URL = "https://in1-ccaas-api.ozonetel.com"
INTERNATIONAL_BASE_URL = "https://api.ccaas.ozonetel.com"


def new_callback_secret() -> str:
    return secrets.token_urlsafe(32)


def default_column_map() -> list[str]:
    return ["PhoneNumber", "Name"]


class CloudAgentAccount(models.Model):
    """One CloudAgent login; the provider's rate limit applies per account."""

    name = models.CharField("display name", max_length=100, unique=True)
    user_name = models.CharField(max_length=100)
    api_key = EncryptedTextField("API key", max_length=200)  # a Fernet token in the database
    base_url = models.URLField(
        "base URL",
        default=DOMESTIC_BASE_URL,
        help_text=f"Domestic {DOMESTIC_BASE_URL}, international {INTERNATIONAL_BASE_URL}, or a partner's URL.",
    )
    # CloudAgent signs nothing, so the callback URL itself is the credential (docs/cloudagent-contract.md, callback).
    callback_secret = models.CharField(max_length=64, unique=True, default=new_callback_secret, editable=False)
    # After a rotation the old URL keeps answering until batches sent with it have had their callbacks.
    previous_callback_secret = models.CharField(max_length=64, blank=True, default="", editable=False)
    previous_callback_secret_until = models.DateTimeField(null=True, blank=True, editable=False)
    # The call summaries' URL ("URL to Push") has a secret of its own: either URL can be replaced alone.
    call_summary_secret = models.CharField(max_length=64, unique=True, default=new_callback_secret, editable=False)
    is_active = models.BooleanField("active", default=True)
    problem = models.TextField(blank=True, help_text="Set when CloudAgent refused our credentials.")
    problem_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "CloudAgent account"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def masked_api_key(self) -> str:
        """Enough of the key to tell two apart, never enough to use it."""
        key = self.api_key or ""
        if len(key) <= 8:
            return "•" * len(key)
        return f"{key[:2]}{'•' * 8}{key[-2:]}"


class PhoneFormat(models.TextChoices):
    NATIONAL = "national", "National digits (9876543210)"
    COUNTRY_CODE = "country_code", "Country code and number, no plus (919876543210)"
    E164 = "e164", "E.164 (+919876543210)"


class Campaign(models.Model):
    """A CloudAgent outbound campaign; `column_map` is sent as `bulkData.map` and must match CloudAgent's."""

    account = models.ForeignKey(CloudAgentAccount, on_delete=models.PROTECT, related_name="campaigns")
    name = models.CharField(max_length=200, help_text="The campaign's name in CloudAgent, exactly.")
    column_map = models.JSONField(
        default=default_column_map,
        help_text="Ordered headers sent as bulkData.map; must contain PhoneNumber.",
    )
    phone_region = models.CharField(max_length=2, default="IN", help_text="ISO country for local numbers.")
    phone_format = models.CharField(max_length=20, choices=PhoneFormat.choices, default=PhoneFormat.NATIONAL)
    check_duplicate = models.BooleanField(default=False, help_text="Send checkDuplicate=true.")
    skip_existing = models.BooleanField(default=False, help_text="Send isDelete=true: skip numbers CloudAgent has.")
    start_after_upload = models.BooleanField(default=False, help_text="Send action=start.")
    update_existing_on_import = models.BooleanField(
        default=False,
        help_text="An imported number already in the campaign updates that lead instead of being a duplicate.",
    )
    is_active = models.BooleanField("active", default=True)
    problem = models.TextField(blank=True, help_text="Set when CloudAgent refused this campaign.")
    problem_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["account__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["account", "name"], name="campaign_unique_name_per_account"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self):
        columns = self.column_map
        if not isinstance(columns, list) or not all(isinstance(c, str) and c.strip() for c in columns):
            raise ValidationError({"column_map": "The column map is a list of header names."})
        if "PhoneNumber" not in columns:
            raise ValidationError({"column_map": "The column map must contain PhoneNumber."})
        if len(set(columns)) != len(columns):
            raise ValidationError({"column_map": "The column map names a header twice."})


class LeadImport(models.Model):
    """One file imported into a campaign: who, when, what came of every row, and its progress."""

    class State(models.TextChoices):
        # A big file's admin preview (a dry run) runs in the background: previewing, then previewed until the
        # operator confirms it (-> pending) or leaves it.
        PREVIEWING = "previewing"
        PREVIEWED = "previewed"
        PENDING = "pending"
        RUNNING = "running"
        COMPLETED = "completed"
        FAILED = "failed"
        UNDONE = "undone"

    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="imports")
    file = models.FileField(upload_to="imports/%Y/%m/", blank=True)
    file_name = models.CharField(max_length=255)
    file_format = models.CharField(max_length=10, blank=True)
    state = models.CharField(max_length=12, choices=State.choices, default=State.PENDING)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    rows = models.PositiveIntegerField(default=0)
    rows_processed = models.PositiveIntegerField(default=0)
    imported = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    duplicates = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    warnings = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True, help_text="[{line, reason}], capped; the file has all.")
    rejected_file = models.FileField(upload_to="imports/rejected/%Y/%m/", blank=True)
    column_choice = models.JSONField(
        default=dict, blank=True, help_text="The operator's mapping for this file: header -> campaign field."
    )
    preview = models.JSONField(default=dict, blank=True, help_text="A background preview's report, first rows only.")
    message = models.TextField(blank=True, help_text="A file-level problem, or the summary.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.file_name} → {self.campaign}"


class ColumnMappingChoice(models.Model):
    """The operator's last mapping of a file with this header into this campaign, offered again for the next such
    file (a platform's export has the same header every time)."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="column_mapping_choices")
    header_signature = models.CharField(max_length=64, help_text="sha256 of the header's keys, in order.")
    header = models.JSONField(default=list, help_text="The header as the file had it.")
    mapping = models.JSONField(default=dict, help_text="Header key -> campaign field, 'extra' or 'ignore'.")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "header_signature"], name="column_mapping_per_header")
        ]

    def __str__(self) -> str:
        return f"{self.campaign}: {', '.join(self.header[:4])}"


class LeadStatus(models.TextChoices):
    """The lead life cycle, used everywhere: admin, CLI JSON, tests. Code names it Lead.Status; it is defined out
    here only because the CHECK constraint in the model's Meta cannot see a class nested in the model."""

    NEW = "new", "new"
    QUEUED = "queued", "queued (in a batch waiting to be sent)"
    SENT = "sent", "sent (CloudAgent accepted the batch)"
    UPLOADED = "uploaded", "uploaded (callback confirmed)"
    FAILED = "failed", "failed (CloudAgent refused it)"
    UNCONFIRMED = "unconfirmed", "unconfirmed (batch partly failed, rows not named)"
    INVALID = "invalid", "invalid (refused by our own checks)"


class Lead(models.Model):
    """One row to dial. Only services change `status`, each checking the current one in the same UPDATE."""

    Status = LeadStatus

    class Source(models.TextChoices):
        IMPORT = "import", "file import"
        MANUAL = "manual", "entered by hand"

    # No index of its own: the composite indexes below all start with the campaign and serve its lookups, and
    # every index costs each write of a lead (a callback rewrites 500 at once).
    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="leads", db_index=False)
    phone_number = models.CharField(max_length=20, help_text="Normalised, E.164.")
    name = models.CharField(max_length=200, blank=True)
    priority = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(99)]
    )
    expiry_date = models.DateField(null=True, blank=True)
    agent_id = models.CharField(max_length=100, blank=True)
    skill = models.CharField(max_length=100, blank=True)
    extra = models.JSONField(default=dict, blank=True, help_text="Other columns the campaign's map names.")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.NEW)
    status_reason = models.CharField(max_length=500, blank=True)
    upload_transaction = models.ForeignKey(
        "uploads.UploadTransaction", null=True, blank=True, on_delete=models.SET_NULL, related_name="leads"
    )
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.MANUAL)
    lead_import = models.ForeignKey(
        LeadImport,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="leads",
        verbose_name="import",
    )
    source_line = models.PositiveIntegerField(null=True, blank=True, help_text="Line in the imported file.")
    # Dialling, a second axis beside `status`: only calls/services.py writes these, from CloudAgent's call
    # summaries. db_default too, so the import's and the benchmarks' raw INSERTs and COPYs need not name them.
    call_attempts = models.PositiveIntegerField("attempts", default=0, db_default=0)
    last_dial_status = models.CharField(max_length=40, blank=True, default="", db_default="")
    last_customer_status = models.CharField(max_length=40, blank=True, default="", db_default="")
    last_disposition = models.CharField(max_length=200, blank=True, default="", db_default="")
    last_call_at = models.DateTimeField(null=True, blank=True)
    # Python defaults, not db_default: db_default disables bulk_create's fast path (docs/performance.md).
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        # Beyond add/change/delete/view: the roles (Operators, Managers, Viewers) are built from these.
        permissions = [
            ("import_lead", "Can import leads from files (and resume or undo an import)"),
            ("export_lead", "Can export leads"),
            ("push_lead", "Can push leads to CloudAgent"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "phone_number"], name="lead_unique_phone_per_campaign"),
            models.CheckConstraint(
                condition=models.Q(priority__isnull=True) | models.Q(priority__gte=1, priority__lte=99),
                name="lead_priority_1_to_99",
            ),
            models.CheckConstraint(condition=models.Q(status__in=LeadStatus.values), name="lead_status_known"),
        ]
        indexes = [
            models.Index(fields=["campaign", "status"], name="lead_campaign_status"),
            models.Index(fields=["status", "status_reason"], name="lead_status_reason"),
            models.Index(fields=["phone_number"], name="lead_phone"),
            # A call summary whose number matches no lead is matched by its UUI, the lead's name as uploaded.
            models.Index(fields=["campaign", "name"], name="lead_campaign_name"),
        ]

    def __str__(self) -> str:
        return f"{self.phone_number} ({self.name})" if self.name else self.phone_number

    def save(self, *args, **kwargs):
        self.updated_at = timezone.now()
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], "updated_at"}
        super().save(*args, **kwargs)
