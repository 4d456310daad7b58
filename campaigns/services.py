"""Campaign-side services: every write to accounts, campaigns and leads goes through functions here."""

import csv
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from campaigns import queues
from campaigns.importing.columns import MappingError, MappingProposal, header_signature, propose_mapping
from campaigns.importing.policy import ImportReport
from campaigns.importing.readers import ImportFileError, Sheet, cell_text, detect_format, open_sheet
from campaigns.importing.writers import import_sheet
from campaigns.models import (
    DOMESTIC_BASE_URL,
    Campaign,
    CloudAgentAccount,
    ColumnMappingChoice,
    Lead,
    LeadImport,
    new_callback_secret,
)
from campaigns.normalize import PhoneError, normalize_phone
from campaigns.selectors import column_mapping_remembered
from cloudagent.rules import header_key

# LeadImport.errors keeps this many {line, reason}; the rejected-rows file has every one.
IMPORT_ERRORS_KEPT = 200
# Rows the column proposal reads to tell which columns hold phone numbers.
MAPPING_SAMPLE_ROWS = 200
# Leads an undo deletes per statement.
UNDO_CHUNK = 5000


# What, changed, deserves a fresh try after CloudAgent refused the account or the campaign: the refusal it may
# fix is forgotten (the problem flag keeps the admin's and the dispatcher's attention until then).
ACCOUNT_FIELDS_CLEARING_PROBLEM = ("user_name", "api_key", "base_url")
CAMPAIGN_FIELDS_CLEARING_PROBLEM = ("name", "column_map", "account_id")


def account_base_url_check(*, stored_base_url: str | None, base_url: str, api_key_given: bool) -> None:
    """Every request carries the account's API key to its base URL, so the URL is https (plain http only with
    LEADHUB_ALLOW_PLAIN_HTTP, i.e. DJANGO_DEBUG), and moving an account to another URL takes its key typed again:
    whoever may edit the account but not read the key must not be able to send it to a server of theirs."""
    parts = urlsplit(base_url)
    schemes = ("https", "http") if settings.LEADHUB_ALLOW_PLAIN_HTTP else ("https",)
    if parts.scheme.lower() not in schemes or not parts.hostname:
        raise ValidationError({"base_url": f"The base URL must be an {' or '.join(schemes)} URL."})
    if stored_base_url is not None and base_url != stored_base_url and not api_key_given:
        raise ValidationError({"api_key": "Type the API key again to change the base URL: the key is sent there."})


@transaction.atomic
def account_upsert(
    *,
    name: str,
    user_name: str,
    api_key: str,
    base_url: str = "",
    is_active: bool | None = None,
    account: CloudAgentAccount | None = None,
) -> tuple[CloudAgentAccount, bool]:
    """Create the account or bring it up to date; idempotent, so scripts can run it on every deploy. `account` is
    the instance to save (the admin's form, which may rename it); without it the account is found by name. New
    credentials or a new address clear the account's problem flag; `is_active` None leaves it as it is. An empty
    api_key keeps the stored one (a new account needs one); a new base URL needs the key given again."""
    if account is None:
        account = CloudAgentAccount.objects.select_for_update().filter(name=name).first() or CloudAgentAccount()
    created = account.pk is None
    if created and not api_key:
        raise ValidationError({"api_key": "A new account needs an API key."})
    stored_base_url = (
        None if created else CloudAgentAccount.objects.filter(pk=account.pk).values_list("base_url", flat=True).get()
    )
    new_base_url = base_url or stored_base_url or DOMESTIC_BASE_URL
    account_base_url_check(stored_base_url=stored_base_url, base_url=new_base_url, api_key_given=bool(api_key))
    values = {"name": name, "user_name": user_name, "base_url": new_base_url}
    if api_key:
        values["api_key"] = api_key
    if is_active is not None:
        values["is_active"] = is_active
    _save_clearing_problem(account, values, ACCOUNT_FIELDS_CLEARING_PROBLEM)
    return account, created


def account_callback_secret_rotate(*, account_id: int) -> CloudAgentAccount:
    """A new callback URL for the account. Batches already sent carry the old URL in their callBackUrl, so it
    keeps answering for CLOUDAGENT_CALLBACK_SECRET_GRACE_SECONDS, then 404s; a second rotation within the grace
    period ends the first one's."""
    with transaction.atomic():
        account = CloudAgentAccount.objects.select_for_update().get(pk=account_id)
        CloudAgentAccount.objects.filter(pk=account.pk, callback_secret=account.callback_secret).update(
            previous_callback_secret=account.callback_secret,
            previous_callback_secret_until=timezone.now()
            + timedelta(seconds=settings.CLOUDAGENT_CALLBACK_SECRET_GRACE_SECONDS),
            callback_secret=new_callback_secret(),
            updated_at=timezone.now(),
        )
    account.refresh_from_db()
    return account


def account_secrets_reencrypt() -> int:
    """Store every API key again under the newest LEADHUB_FIELD_ENCRYPTION_KEYS key (reading accepts any of
    them), so the older keys can be dropped. One short UPDATE per account; safe to run again."""
    count = 0
    for account_id, api_key in CloudAgentAccount.objects.values_list("pk", "api_key"):
        CloudAgentAccount.objects.filter(pk=account_id).update(api_key=api_key)
        count += 1
    return count


@transaction.atomic
def campaign_upsert(
    *,
    name: str,
    account: CloudAgentAccount,
    column_map: list[str],
    phone_region: str = "IN",
    check_duplicate: bool = False,
    skip_existing: bool = False,
    start_after_upload: bool = False,
    campaign: Campaign | None = None,
) -> tuple[Campaign, bool]:
    """Create the campaign or bring it up to date; the column map must match CloudAgent's for the campaign.
    `campaign` is the instance to save (the admin's form, whose other fields are saved as they are); without it
    the campaign is found by account and name. A new name, column map or account clears its problem flag."""
    if campaign is None:
        campaign = Campaign.objects.select_for_update().filter(account=account, name=name).first() or Campaign()
    created = campaign.pk is None
    values = {
        "name": name,
        "account_id": account.pk,
        "column_map": [c.strip() for c in column_map if c.strip()],
        "phone_region": phone_region.upper(),
        "check_duplicate": check_duplicate,
        "skip_existing": skip_existing,
        "start_after_upload": start_after_upload,
    }
    _save_clearing_problem(campaign, values, CAMPAIGN_FIELDS_CLEARING_PROBLEM)
    return campaign, created


def _save_clearing_problem(instance, values: dict, clearing: tuple[str, ...]) -> None:
    """Set `values` on the instance and save it; clear its problem flag when one of `clearing` differs from what
    is stored (read under a row lock, so two saves cannot both miss the change)."""
    if instance.pk is not None:
        stored = type(instance).objects.select_for_update().filter(pk=instance.pk).values(*clearing).first() or {}
        if any(name in values and stored.get(name) != values[name] for name in clearing):
            instance.problem, instance.problem_at = "", None
    for field, value in values.items():
        setattr(instance, field, value)
    instance.full_clean()
    instance.save()


IMPORT_PREVIEW_PREFIX = "leadhub-import-"


def import_previews_sweep(*, older_than: timedelta | None = None) -> int:
    """Delete uploaded files that were previewed and never confirmed (confirming removes its own): they hold
    customers' numbers and would pile up in the temp folder forever. Age from the file's mtime; returns how many
    were removed. Run on every preview and by `manage.py sweep_import_previews`."""
    if older_than is None:
        older_than = timedelta(seconds=settings.LEADHUB_IMPORT_PREVIEW_MAX_AGE_SECONDS)
    cutoff = time.time() - older_than.total_seconds()
    removed = 0
    for path in Path(tempfile.gettempdir()).glob(f"{IMPORT_PREVIEW_PREFIX}*"):
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            pass  # a confirm or another sweep took it first
    return removed


def lead_import_files_expire(*, older_than: timedelta) -> int:
    """Delete the stored files of imports over for longer than `older_than` (LEADHUB_IMPORT_FILES_KEEP_DAYS): the
    uploaded file and its rejected-rows file hold customers' numbers and would pile up forever. The import's
    record, counts and first errors stay. A background preview nobody confirmed in that time ends `failed`.
    Returns how many imports lost their files."""
    cutoff = timezone.now() - older_than
    over = LeadImport.State.COMPLETED, LeadImport.State.FAILED, LeadImport.State.UNDONE
    expired = (
        LeadImport.objects.filter(state__in=[*over, LeadImport.State.PREVIEWED])
        .filter(Q(finished_at__lt=cutoff) | Q(finished_at__isnull=True, created_at__lt=cutoff))
        .exclude(file="", rejected_file="")
    )
    days = older_than.days
    count = 0
    for lead_import in expired:
        for stored in (lead_import.file, lead_import.rejected_file):
            if stored.name:
                stored.storage.delete(stored.name)
        note = f"Its files were deleted after {days} day(s) (LEADHUB_IMPORT_FILES_KEEP_DAYS)."
        changes = {"file": "", "rejected_file": "", "message": f"{lead_import.message} {note}".strip()}
        if lead_import.state == LeadImport.State.PREVIEWED:
            changes.update(state=LeadImport.State.FAILED, finished_at=timezone.now())
            changes["message"] = f"Previewed and never confirmed. {note}"
        count += LeadImport.objects.filter(pk=lead_import.pk, state=lead_import.state).update(**changes)
    return count


def lead_phone_check(*, campaign: Campaign, phone_number: str, lead_id: int | None = None) -> str:
    """The number as leads store it (E.164 for the campaign's region), refused when it is not a phone number or
    the campaign has it already: a lead entered by hand follows the import's rules, or a failed-rows file naming
    it could never be matched to it."""
    try:
        phone = normalize_phone(phone_number, campaign.phone_region)
    except PhoneError as exc:
        raise ValidationError({"phone_number": str(exc)}) from None
    if Lead.objects.filter(campaign=campaign, phone_number=phone).exclude(pk=lead_id).exists():
        raise ValidationError({"phone_number": f"{phone} is already in this campaign."})
    return phone


class LeadImportError(Exception):
    """An import cannot do what was asked in its current state; the message is for the operator."""


def _mapping_proposal(*, campaign: Campaign, sheet: Sheet, column_choice: dict[str, str] | None) -> MappingProposal:
    remembered = column_mapping_remembered(campaign=campaign, header_signature=header_signature(sheet.header))
    try:
        return propose_mapping(
            header=sheet.header,
            sample_rows=sheet.peek(MAPPING_SAMPLE_ROWS),
            column_map=campaign.column_map,
            region=campaign.phone_region,
            chosen=column_choice,
            remembered=remembered,
        )
    except MappingError as exc:
        raise ImportFileError(str(exc)) from None


def lead_import_mapping(
    *, campaign: Campaign, sheet: Sheet, column_choice: dict[str, str] | None = None
) -> MappingProposal:
    """Which column becomes which field (campaigns.importing.columns): the operator's choice for this file, else their
    last mapping of a file with this header, the campaign's map, a known export, the aliases and the columns'
    content. Raises ImportFileError when the choice names nothing or no phone column can be decided."""
    proposal = _mapping_proposal(campaign=campaign, sheet=sheet, column_choice=column_choice)
    if problem := proposal.phone_problem():
        raise ImportFileError(problem)
    return proposal


def lead_import_propose(
    *, campaign: Campaign, path: str | Path, file_name: str, file_format: str = ""
) -> tuple[MappingProposal, int]:
    """The admin's mapping step: the proposal for every column and the file's estimated rows. An undecided phone
    column is no error here (the operator decides); an unreadable file is."""
    with open_sheet(path, detect_format(file_name, file_format)) as sheet:
        return _mapping_proposal(campaign=campaign, sheet=sheet, column_choice=None), sheet.rows_estimate


def column_mapping_remember(*, campaign: Campaign, mapping: MappingProposal) -> None:
    """Keep the operator's mapping of this header for the next file with it (the columns without a header have no
    key to remember them by)."""
    header = [c.header for c in mapping.columns]
    ColumnMappingChoice.objects.update_or_create(
        campaign=campaign,
        header_signature=header_signature(header),
        defaults={
            "header": header,
            "mapping": {header_key(c.header): c.field for c in mapping.columns if header_key(c.header)},
            "updated_at": timezone.now(),
        },
    )


def lead_import_preview(
    *,
    campaign: Campaign,
    path: str | Path,
    file_name: str,
    file_format: str = "",
    column_choice: dict[str, str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """A dry run over the whole file: every row is checked and looked up in the campaign, and nothing is written,
    not even an import record. Raises ImportFileError for a problem with the file as a whole."""
    with open_sheet(path, detect_format(file_name, file_format)) as sheet:
        mapping = lead_import_mapping(campaign=campaign, sheet=sheet, column_choice=column_choice)
        return import_sheet(campaign=campaign, sheet=sheet, mapping=mapping, dry_run=True, progress=progress)


def lead_import_create(
    *,
    campaign: Campaign,
    path: str | Path,
    file_name: str,
    file_format: str = "",
    column_choice: dict[str, str] | None = None,
    created_by=None,
    preview: bool = False,
) -> LeadImport:
    """The import's record, with its own copy of the file: the admin's temporary upload or the CLI's path may be
    gone before a background job reads it. The columns are mapped first, so a file-level problem raises
    ImportFileError with nothing written; an operator's choice of columns is kept with the import (a background
    run reads it) and remembered for the next file with this header. `rows` starts as an estimate (for the
    progress bar) and ends exact. With `preview`, the import waits for its background preview and the
    operator's confirmation (lead_import_preview_start, lead_import_confirm)."""
    fmt = detect_format(file_name, file_format)
    with open_sheet(path, fmt) as sheet:
        mapping = lead_import_mapping(campaign=campaign, sheet=sheet, column_choice=column_choice)
        estimate = sheet.rows_estimate
    name = Path(file_name).name
    lead_import = LeadImport(
        campaign=campaign,
        file_name=name,
        file_format=fmt,
        created_by=created_by,
        rows=estimate,
        column_choice=column_choice or {},
        state=LeadImport.State.PREVIEWING if preview else LeadImport.State.PENDING,
    )
    with open(path, "rb") as f:
        lead_import.file.save(name, File(f), save=False)
    lead_import.save()
    if column_choice:
        column_mapping_remember(campaign=campaign, mapping=mapping)
    return lead_import


def lead_import_start(*, lead_import: LeadImport) -> bool:
    """Runs a small import now; one over LEADHUB_IMPORT_BACKGROUND_ROWS rows goes to the "imports" queue once the
    record is committed, so the worker finds it. Returns True when it went to the background."""
    if lead_import.rows <= settings.LEADHUB_IMPORT_BACKGROUND_ROWS:
        lead_import_run(lead_import=lead_import)
        return False
    transaction.on_commit(lambda: queues.lead_import_run_enqueue(lead_import_id=lead_import.pk))
    return True


def lead_import_preview_start(*, lead_import: LeadImport) -> None:
    """A big file's preview goes to the "imports" queue once the record is committed: a dry run of millions of
    rows does not fit in a web request."""
    transaction.on_commit(lambda: queues.lead_import_preview_enqueue(lead_import_id=lead_import.pk))


def lead_import_preview_run(*, lead_import: LeadImport) -> ImportReport:
    """The dry run of a stored import, with progress on the record like a real run; its report (first rows only)
    is kept on the record for the admin to show beside Confirm."""
    claimed = LeadImport.objects.filter(
        pk=lead_import.pk, state=LeadImport.State.PREVIEWING, started_at__isnull=True
    ).update(started_at=timezone.now())
    if not claimed:
        raise LeadImportError(f"Import {lead_import.pk} has no preview waiting to run.")
    previewing = LeadImport.objects.filter(pk=lead_import.pk, state=LeadImport.State.PREVIEWING)
    try:
        with open_sheet(lead_import.file.path, lead_import.file_format) as sheet:
            mapping = lead_import_mapping(
                campaign=lead_import.campaign, sheet=sheet, column_choice=lead_import.column_choice
            )
            report = import_sheet(
                campaign=lead_import.campaign,
                sheet=sheet,
                mapping=mapping,
                dry_run=True,
                progress=lambda lines, expected: previewing.update(rows_processed=lines, rows=expected),
            )
    except Exception as exc:
        message = str(exc) if isinstance(exc, ImportFileError) else f"The preview stopped on an error: {exc!r}"
        previewing.update(state=LeadImport.State.FAILED, message=message, finished_at=timezone.now())
        raise
    previewing.update(
        state=LeadImport.State.PREVIEWED,
        rows_processed=report.rows,
        rows=report.rows,
        preview=report_summary(report),
        message=f"Preview: {lead_import_summary(report)}",
        started_at=None,
    )
    lead_import.refresh_from_db()
    return report


def report_summary(report: ImportReport, rows_kept: int = 100) -> dict:
    """A report as JSON for the record: complete counts, the first rows of each kind."""
    return {
        **report.counts(),
        "header": report.header,
        "columns": report.columns,
        "profile": report.profile,
        "mapped": [list(m) for m in report.mapped],
        **{
            kind: [list(item) for item in getattr(report, kind)[:rows_kept]]
            for kind in ("new_rows", "updated_rows", "duplicate_rows", "rejected_rows", "warning_list")
        },
    }


def lead_import_confirm(*, lead_import: LeadImport) -> bool:
    """The operator confirms a previewed import: it runs like any other (now, or in the background when large).
    Returns True when it went to the background."""
    confirmed = LeadImport.objects.filter(pk=lead_import.pk, state=LeadImport.State.PREVIEWED).update(
        state=LeadImport.State.PENDING, rows_processed=0, preview={}, message=""
    )
    if not confirmed:
        lead_import.refresh_from_db(fields=["state"])
        raise LeadImportError(f"Only a previewed import can be confirmed; this one is {lead_import.state}.")
    lead_import.refresh_from_db()
    return lead_import_start(lead_import=lead_import)


def lead_import_resume(*, lead_import: LeadImport) -> bool:
    """Run again an import that a crash stopped (failed, or left running by a worker that died) from its stored
    file. Rows it already wrote count as imported, so nothing is written twice and no row is lost. Returns True
    when it went to the background."""
    if lead_import.state == LeadImport.State.RUNNING:
        if queues.lead_import_job_alive(lead_import_id=lead_import.pk):
            raise LeadImportError("This import is still running in a worker; it cannot be resumed.")
        # A run in a request or in `manage.py import_leads` has no job: only its heartbeat says it is alive.
        silent_since = timezone.now() - timedelta(seconds=settings.LEADHUB_WATCHDOG_SECONDS)
        if lead_import.heartbeat_at is not None and lead_import.heartbeat_at >= silent_since:
            raise LeadImportError(
                "This import is still running (it wrote rows in the last "
                f"{settings.LEADHUB_WATCHDOG_SECONDS:g} seconds); it cannot be resumed."
            )
    reset = LeadImport.objects.filter(
        pk=lead_import.pk, state__in=[LeadImport.State.FAILED, LeadImport.State.RUNNING]
    ).update(state=LeadImport.State.PENDING, rows_processed=0, message="Resumed after a stop.", finished_at=None)
    if not reset:
        lead_import.refresh_from_db(fields=["state"])
        raise LeadImportError(f"Only a failed or stopped import can be resumed; this one is {lead_import.state}.")
    lead_import.refresh_from_db()
    return lead_import_start(lead_import=lead_import)


def lead_imports_resume_stopped(*, older_than: timedelta = timedelta(minutes=1)) -> int:
    """Background imports and previews whose RQ job is gone (a worker killed outright, or Redis come back empty):
    start the pending ones again, resume the running ones from their stored file, run a lost preview again. The
    import row is the record of the work; the job was only a way to run it. Returns how many were restarted."""
    cutoff = timezone.now() - older_than
    stopped = (
        LeadImport.objects.filter(
            state__in=[LeadImport.State.PENDING, LeadImport.State.RUNNING, LeadImport.State.PREVIEWING],
            rows__gt=settings.LEADHUB_IMPORT_BACKGROUND_ROWS,
            created_at__lt=cutoff,
        )
        # A run that has written a chunk lately is alive, job or not (`manage.py import_leads` has none).
        .exclude(state=LeadImport.State.RUNNING, heartbeat_at__gte=cutoff)
        .select_related("campaign")
    )
    restarted = 0
    for lead_import in stopped:
        previewing = lead_import.state == LeadImport.State.PREVIEWING
        if queues.lead_import_job_alive(lead_import_id=lead_import.pk, preview=previewing):
            continue
        if previewing:
            # A dry run writes nothing: it starts over (its claim is the start time).
            LeadImport.objects.filter(pk=lead_import.pk, state=LeadImport.State.PREVIEWING).update(started_at=None)
            queues.lead_import_preview_enqueue(lead_import_id=lead_import.pk)
        elif lead_import.state == LeadImport.State.PENDING:
            lead_import_start(lead_import=lead_import)
        else:
            try:
                lead_import_resume(lead_import=lead_import)
            except LeadImportError:
                continue  # it wrote again, or someone resumed it, since it was read: not stopped after all
        restarted += 1
    return restarted


def lead_import_run(*, lead_import: LeadImport, progress: Callable[[int, int], None] | None = None) -> ImportReport:
    """Runs a pending import to its end. Every chunk commits with its rows_processed, so the admin's progress bar
    moves; a failure marks the import failed and keeps the chunks written, which undo can remove.
    `progress(lines_read, lines_expected)` is for a caller's own display (the CLI's bar)."""
    now = timezone.now()
    claimed = LeadImport.objects.filter(pk=lead_import.pk, state=LeadImport.State.PENDING).update(
        state=LeadImport.State.RUNNING, started_at=now, heartbeat_at=now
    )
    if not claimed:
        lead_import.refresh_from_db(fields=["state"])
        raise LeadImportError(f"Import {lead_import.pk} is {lead_import.state}; only a pending import can run.")
    running = LeadImport.objects.filter(pk=lead_import.pk, state=LeadImport.State.RUNNING)

    def chunk_done(lines: int, expected: int) -> None:
        running.update(rows_processed=lines, rows=expected, heartbeat_at=timezone.now())
        if progress:
            progress(lines, expected)

    try:
        with (
            open_sheet(lead_import.file.path, lead_import.file_format) as sheet,
            tempfile.TemporaryFile("w+", encoding="utf-8-sig", newline="") as rejected,
        ):
            writer = csv.writer(rejected)
            writer.writerow([*sheet.header, "line", "reason"])
            mapping = lead_import_mapping(
                campaign=lead_import.campaign, sheet=sheet, column_choice=lead_import.column_choice
            )
            report = import_sheet(
                campaign=lead_import.campaign,
                sheet=sheet,
                mapping=mapping,
                dry_run=False,
                lead_import_id=lead_import.pk,
                on_reject=lambda line, cells, reason: writer.writerow([*map(cell_text, cells), line, reason]),
                progress=chunk_done,
            )
            if report.rejected:
                rejected.seek(0)
                name = f"{Path(lead_import.file_name).stem}-rejected.csv"
                lead_import.rejected_file.save(name, File(rejected.buffer), save=False)
    except Exception as exc:
        message = str(exc) if isinstance(exc, ImportFileError) else f"The import stopped on an error: {exc!r}"
        running.update(state=LeadImport.State.FAILED, message=message, finished_at=timezone.now())
        lead_import.refresh_from_db()
        raise
    running.update(
        state=LeadImport.State.COMPLETED,
        **report.counts(),
        rows_processed=report.rows,
        errors=report.errors[:IMPORT_ERRORS_KEPT],
        rejected_file=lead_import.rejected_file.name or "",
        message=lead_import_summary(report),
        finished_at=timezone.now(),
    )
    lead_import.refresh_from_db()
    return report


def lead_import_summary(report: ImportReport) -> str:
    parts = [f"{report.rows} rows: {report.imported} imported"]
    if report.updated:
        parts.append(f"{report.updated} updated")
    parts += [f"{report.duplicates} duplicates", f"{report.rejected} rejected", f"{report.warnings} warnings"]
    return ", ".join(parts) + "."


@transaction.atomic
def lead_import_undo(*, lead_import: LeadImport) -> int:
    """Deletes the leads an import created, only while every one of them is still new: a queued or sent lead may
    be in CloudAgent already. Changes the import made to older leads (update_existing_on_import) stay. Returns
    the number of leads deleted."""
    locked = LeadImport.objects.select_for_update().get(pk=lead_import.pk)
    if locked.state not in (LeadImport.State.COMPLETED, LeadImport.State.FAILED):
        raise LeadImportError(f"Only a completed or failed import can be undone; this one is {locked.state}.")
    leads = Lead.objects.filter(lead_import=locked)
    moved_on = leads.exclude(status=Lead.Status.NEW).count()
    if moved_on:
        raise LeadImportError(
            f"{moved_on} of this import's leads are no longer new (queued, sent or beyond); nothing was deleted."
        )
    # A chunk at a time: a lead's calls point at it (SET_NULL), so delete() loads every lead it is given as a
    # model instance first.
    deleted = 0
    new_leads = leads.filter(status=Lead.Status.NEW).order_by("pk").values_list("pk", flat=True)
    while chunk := list(new_leads[:UNDO_CHUNK]):
        deleted += Lead.objects.filter(pk__in=chunk).delete()[1].get(Lead._meta.label, 0)
    if leads.exists():  # the push claimed one between the check and the delete: the raise rolls back
        raise LeadImportError("Some of this import's leads were just queued for CloudAgent; nothing was deleted.")
    LeadImport.objects.filter(pk=locked.pk).update(
        state=LeadImport.State.UNDONE, message=f"Undone: {deleted} leads deleted. {locked.message}".strip()
    )
    lead_import.refresh_from_db()
    return deleted
