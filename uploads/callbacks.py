"""CloudAgent's asynchronous answers (contract.md, "The asynchronous result"): each callback is stored exactly as
it came, then applied to its transaction and leads.

Nothing documents retries, ordering or signatures, so a callback may come twice, late, out of order, or before
the push has stored the transactionId. Hence: every state change checks the current state in the same UPDATE
(nothing moves backwards, a second application changes nothing), a callback for an unknown transactionId waits
until the push records it, and the transaction row is locked before its leads, which are locked in primary-key
order, so overlapping callbacks serialise instead of deadlocking (perf-notes.md, Callback).
"""

import csv
import io
import ipaddress
import json
import logging
import math
import re
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import django_rq
import python_calamine
import requests
from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.core.files.base import ContentFile
from django.core.files.uploadhandler import MemoryFileUploadHandler
from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.http.multipartparser import MultiPartParser, MultiPartParserError
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from rq import Retry
from rq.job import JobStatus

from campaigns.models import CloudAgentAccount, Lead
from campaigns.normalize import PhoneError, normalize_phone
from cloudagent.spreadsheet_guard import SheetLimits, SpreadsheetRefused, spreadsheet_check
from uploads.models import CallbackEvent, UploadTransaction

logger = logging.getLogger(__name__)

TxState = UploadTransaction.State
EventState = CallbackEvent.State

# A transactionId proves CloudAgent queued the batch even if our worker has not yet moved it to `queued`.
OPEN_TRANSACTION_STATES = (TxState.PENDING, TxState.SENDING, TxState.QUEUED)
# `queued` too: the push may record the transactionId a moment before it moves the leads to `sent`.
OPEN_LEAD_STATUSES = (Lead.Status.SENT, Lead.Status.QUEUED)

SUCCESS, FAIL = "Success", "Fail"
_STATUS_WORDS = {"success": SUCCESS, "fail": FAIL, "failed": FAIL, "failure": FAIL}
_TRANSACTION_ID = re.compile(r"[0-9A-Za-z_-]{1,40}")  # contract.md: 24-25 digits; the column holds 40
_COUNT = re.compile(r"\d{1,9}(?:\.0*)?")  # counts come as strings, sometimes "6.0"
# The provider's own sample nests an unescaped JSON object in a string: {"data":"{"totalNoUploaded":"6",...}"}.
_UNESCAPED_DATA_STRING = re.compile(r'\{\s*"data"\s*:\s*"(\{.*\})"\s*\}', re.DOTALL)
# A callback's data object is flat; these bound what parsing a hostile body can cost.
MAX_NESTING = 32
MAX_UNWRAPPING = 2
# Provider times outside these years are a placeholder or garbage (0001-01-01 became 1 BC on PostgreSQL, and
# every changelist showing it answered 500): stored as unknown.
PROVIDER_YEARS = range(2000, 2101)

FAILED_FILE_URL_TTL = timedelta(hours=24)  # contract.md: the pre-signed URL is valid for 24 hours
# RQ retries a failed-file download on these intervals (the last one repeating): the attempts span more than
# the URL's 24 h, so the last attempt always finds the deadline passed and settles the leads as unconfirmed.
FAILED_FILE_RETRY = Retry(max=30, interval=[30, 60, 120, 300, 900, 1800, 3600])
PENDING_JOB_STATUSES = (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED)

PHONE_HEADERS = (
    "phonenumber",
    "phone",
    "phoneno",
    "mobilenumber",
    "mobileno",
    "mobile",
    "contactnumber",
    "customernumber",
    "msisdn",
    "number",
)
REASON_HEADERS = (
    "reason",
    "failurereason",
    "failedreason",
    "errorreason",
    "errormessage",
    "error",
    "remarks",
    "remark",
    "comments",
    "comment",
    "description",
    "message",
    "status",
)
HEADER_SCAN_ROWS = 10  # a spreadsheet may open with a title row or two before the headers
# contract.md, related facts: CloudAgent's duplicate reason is "Number Already Exist".
ALREADY_HELD = re.compile(r"already\s+exist", re.IGNORECASE)
ALREADY_HELD_REASON = "CloudAgent already held it: an earlier attempt of this batch got through"
GENERIC_FAILED_REASON = "CloudAgent did not add this number (its failed file gives no reason)"
UNCONFIRMED_REASON = "CloudAgent did not process every row of this batch and did not say which"
UNMATCHED_ROWS_REASON = "CloudAgent's failed file names rows we cannot match to this batch's leads"


class CallbackInvalid(ValueError):
    """The body is not a callback we can read; the message goes back to the sender and stays on the event."""


class FailedFileUnavailable(Exception):
    """The failed file cannot be had or read, and trying again will not change that."""


class FailedFileTemporarilyUnavailable(Exception):
    """A transport error or a 5xx: worth another try while the pre-signed URL is still valid."""


class FailedFileRetry(Exception):
    """Raised out of the job so RQ retries it (FAILED_FILE_RETRY)."""


@dataclass(frozen=True)
class CallbackData:
    """The `data` object of a callback, read defensively: every value arrives as a string, maybe padded."""

    transaction_id: str
    status: str
    message: str
    total_uploaded: int | None
    numbers_processed: int | None
    numbers_not_processed: int | None
    failed_file_path: str
    started_at: datetime | None
    finished_at: datetime | None
    raw: dict


@dataclass(frozen=True)
class FailedFileRows:
    phone_header: str
    reason_header: str
    rows: list[tuple[str, str]]  # (phone as written in the file, reason or "")


# --- Parsing ---------------------------------------------------------------------------------------------------


def callback_body_parse(*, body: str, content_type: str) -> CallbackData:
    """Read any of the three documented shapes: JSON {"data": {...}}, JSON {"data": "<json>"} and a form field
    data=<json> (url-encoded or multipart). The shape is told from the body, since the content type is not
    documented; unknown extra fields are kept in `raw` and otherwise ignored."""
    data = _sanitised(_data_object(body, content_type))
    transaction_id = _text(data.get("transactionId"))
    if not transaction_id:
        raise CallbackInvalid('"data" has no transactionId')
    if not _TRANSACTION_ID.fullmatch(transaction_id):
        raise CallbackInvalid(f"transactionId {transaction_id[:60]!r} is not a CloudAgent transactionId")
    status_text = _text(data.get("status"))
    status = _STATUS_WORDS.get(status_text.lower())
    if status is None:
        raise CallbackInvalid(f'status {status_text[:60]!r} is neither "Success" nor "Fail"')
    return CallbackData(
        transaction_id=transaction_id,
        status=status,
        message=_text(data.get("message"))[:400],
        total_uploaded=_count(data.get("totalNoUploaded")),
        numbers_processed=_count(data.get("numbersProcessed")),
        numbers_not_processed=_count(data.get("numbersNotProcessed")),
        failed_file_path=_text(data.get("failedFilePath")),
        started_at=_provider_time(data.get("startDateTime")),
        finished_at=_provider_time(data.get("endDateTime")),
        raw=data,
    )


def _data_object(body: str, content_type: str) -> dict:
    text = body.strip()
    if not text:
        raise CallbackInvalid("the body is empty")
    if content_type.split(";")[0].strip().lower() == "multipart/form-data":
        field = _multipart_field(body, content_type)
    elif text[0] in '{["':
        document = _json(text, what="the body")
        if isinstance(document, dict) and "data" in document:
            field = document["data"]
        elif isinstance(document, dict) and "transactionId" in document:
            field = document  # the data object without its envelope: undocumented, harmless to accept
        else:
            raise CallbackInvalid('the JSON body has no "data" object')
    else:
        values = parse_qs(text, keep_blank_values=True).get("data")
        if not values:
            raise CallbackInvalid("expected JSON or a form field data=<json>, found neither")
        field = values[0]
    if isinstance(field, str):
        field = _json(field.strip(), what='"data"')
    if not isinstance(field, dict):
        raise CallbackInvalid('"data" is not a JSON object')
    return field


def _json(text: str, *, what: str, unwrapped: int = 0):
    """json.loads, refusing nesting deeper than MAX_NESTING first (a body nested ~1,000 deep raised
    RecursionError, left the event `received` and broke the sweep on every tick), and unwrapping the provider's
    string-in-a-string shapes at most MAX_UNWRAPPING times."""
    if unwrapped > MAX_UNWRAPPING:
        raise CallbackInvalid(f"{what} nests JSON inside strings more than {MAX_UNWRAPPING} times")
    if _nesting_depth(text) > MAX_NESTING:
        raise CallbackInvalid(f"{what} nests deeper than {MAX_NESTING} levels")
    try:
        document = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:
        quirk = _UNESCAPED_DATA_STRING.fullmatch(text)
        if quirk is None:
            raise CallbackInvalid(f"{what} is not valid JSON: {str(exc)[:200]}") from None
        return {"data": _json(quirk.group(1), what='"data"', unwrapped=unwrapped + 1)}
    if isinstance(document, str) and document.lstrip().startswith("{"):
        return _json(document, what=what, unwrapped=unwrapped + 1)  # a whole body sent as one JSON string
    return document


def _nesting_depth(text: str) -> int:
    """The deepest [ / { nesting outside strings, in one pass."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _finite_float(text: str) -> float:
    """1e400 parses as infinity, which no database column stores: a body carrying one is malformed."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON value")  # json.loads accepts NaN; PostgreSQL's jsonb does not


def _multipart_field(body: str, content_type: str) -> str:
    raw = body.encode()
    meta = {"CONTENT_TYPE": content_type, "CONTENT_LENGTH": len(raw)}
    try:
        fields, files = MultiPartParser(meta, io.BytesIO(raw), [MemoryFileUploadHandler()]).parse()
        if "data" in fields:
            return fields["data"]
        if "data" in files:
            return files["data"].read().decode("utf-8")
    except (MultiPartParserError, SuspiciousOperation, UnicodeDecodeError, ValueError) as exc:
        raise CallbackInvalid(f"the multipart body cannot be read: {str(exc)[:200]}") from exc
    raise CallbackInvalid('the form has no "data" field')


def _text(value) -> str:
    if value is None:
        return ""
    return _clean_str(value if isinstance(value, str) else str(value)).strip()


def _clean_str(text: str) -> str:
    """NUL and lone surrogates are valid in JSON but not in PostgreSQL text or jsonb."""
    text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def _sanitised(value):
    if isinstance(value, str):
        return _clean_str(value)
    if isinstance(value, dict):
        return {_clean_str(str(k)): _sanitised(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_sanitised(v) for v in value]
    return value


def _count(value) -> int | None:
    """A count as CloudAgent writes it ("6", " 6 ", 6, "6.0"); None when missing or not a count."""
    text = _text(value)
    if not _COUNT.fullmatch(text):
        return None
    return int(text.split(".")[0])


def _provider_time(value) -> datetime | None:
    """CloudAgent's timestamps carry no zone; its servers keep Indian time (CLOUDAGENT_TIME_ZONE)."""
    text = _text(value)
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.year not in PROVIDER_YEARS:
        return None
    if timezone.is_naive(moment):
        moment = moment.replace(tzinfo=ZoneInfo(settings.CLOUDAGENT_TIME_ZONE))
    return moment


def failed_file_url_check(url: str) -> str:
    """Why a failedFilePath cannot be fetched ("" when it can): only http(s) URLs to a host, ever, and only to the
    hosts CLOUDAGENT_FAILED_FILE_HOSTS names when it names any, so a forged callback cannot make a worker fetch
    an address inside our network."""
    if len(url) > UploadTransaction._meta.get_field("failed_file_url").max_length:
        return "the URL is too long"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "the URL cannot be parsed"
    if parts.scheme.lower() not in ("http", "https"):
        return f"scheme {parts.scheme or '(none)'!r} is not http(s)"
    if not parts.hostname:
        return "the URL names no host"
    allowed = settings.CLOUDAGENT_FAILED_FILE_HOSTS
    host = parts.hostname.lower()
    if allowed and not any(_host_matches(host, name) for name in allowed):
        return f"host {host!r} is not in CLOUDAGENT_FAILED_FILE_HOSTS"
    return ""


def _host_matches(host: str, allowed: str) -> bool:
    """A name covers its subdomains; an address only itself (127.0.0.1 is no "subdomain" of 0.0.1)."""
    if host == allowed:
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host.endswith("." + allowed)
    return False


# --- Receiving and applying --------------------------------------------------------------------------------


def account_for_callback_secret(secret: str) -> CloudAgentAccount | None:
    """The account whose callback URL this is, or was until a rotation less than the grace period ago. Every
    secret is compared in constant time, none skipped, so the response time says nothing about how close a
    guess came (the URL is the only credential)."""
    match = None
    now = timezone.now()
    accounts = CloudAgentAccount.objects.only(
        "pk", "callback_secret", "previous_callback_secret", "previous_callback_secret_until"
    )
    for account in accounts:
        if constant_time_compare(account.callback_secret, secret):
            match = account
        previous_valid = (
            account.previous_callback_secret_until is not None and account.previous_callback_secret_until > now
        )
        if constant_time_compare(account.previous_callback_secret, secret) and previous_valid and secret:
            match = account
    return match


def callback_event_receive(
    *, account: CloudAgentAccount | None, body: bytes, content_type: str, remote_addr: str | None
) -> CallbackEvent:
    """Store the callback exactly as it came, committed before anything parses it: whatever happens next, the
    provider's answer is kept for inspection and can be applied again. A body that cannot even be stored as
    text (not UTF-8, NUL bytes) is stored escaped and marked invalid."""
    problem = ""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text, problem = body.decode("utf-8", "backslashreplace"), "the body is not UTF-8"
    if "\x00" in text:
        text, problem = text.replace("\x00", "\\x00"), problem or "the body contains NUL bytes"
    return CallbackEvent.objects.create(
        account=account,
        body=text,
        content_type=_text(content_type)[:200],
        remote_addr=_ip_address(remote_addr),
        state=EventState.INVALID if problem else EventState.RECEIVED,
        error=problem,
    )


def _ip_address(value: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address((value or "").strip()))
    except ValueError:
        return None


def callback_event_apply(*, event: CallbackEvent) -> CallbackEvent:
    """Parse a stored callback and apply it to its transaction and leads; returns the event in its new state.

    Idempotent and safe to run concurrently (from the view, the push and the sweep): only a `received` or
    `waiting` event is applied, under a row lock. An event left waiting is looked at once more after its
    waiting state is committed: the push stores the transactionId, commits, then looks for waiting events
    (callback_events_apply_waiting), so one side or the other always sees both."""
    event = _event_apply_once(event.pk)
    if (
        event.state == EventState.WAITING
        and UploadTransaction.objects.filter(transaction_id=event.transaction_id).exists()
    ):
        event = _event_apply_once(event.pk)
    return event


def callback_events_apply_waiting(*, upload_transaction: UploadTransaction) -> list[CallbackEvent]:
    """Apply the callbacks that arrived before this transaction's transactionId was stored. The push calls this
    right after committing the transactionId; the first callback wins and later ones are ignored as duplicates."""
    if not upload_transaction.transaction_id:
        return []
    pks = CallbackEvent.objects.filter(
        state=EventState.WAITING, transaction_id=upload_transaction.transaction_id
    ).order_by("id")
    return [callback_event_apply(event=CallbackEvent(pk=pk)) for pk in pks.values_list("pk", flat=True)]


def callback_events_sweep(*, received_before: timedelta = timedelta(minutes=1)) -> dict[str, int]:
    """The safety net behind the webhook: apply waiting events whose transaction is now known, events left
    `received` by a request that died midway, and re-enqueue failed-file downloads whose job was never queued
    (Redis down at commit). Counts by resulting state, for the management command and the status page."""
    known = UploadTransaction.objects.filter(transaction_id__isnull=False).values("transaction_id")
    pending = CallbackEvent.objects.filter(
        Q(state=EventState.WAITING, transaction_id__in=known)
        | Q(state=EventState.RECEIVED, received_at__lt=timezone.now() - received_before)
    ).order_by("id")
    counts: dict[str, int] = defaultdict(int)
    for pk in pending.values_list("pk", flat=True):
        try:
            counts[callback_event_apply(event=CallbackEvent(pk=pk)).state] += 1
        except Exception:  # one event that breaks on our side must not stop the sweep of the others
            logger.exception("callback event %s could not be applied; it stays for the next sweep", pk)
            counts["errors"] += 1
    for upload_transaction_id in upload_transactions_failed_file_pending().values_list("pk", flat=True):
        if _failed_file_fetch_enqueue(upload_transaction_id):
            counts["failed_files_enqueued"] += 1
    counts["still_waiting"] = CallbackEvent.objects.filter(state=EventState.WAITING).count()
    return dict(counts)


def _event_apply_once(event_pk: int) -> CallbackEvent:
    with transaction.atomic():
        event = CallbackEvent.objects.select_for_update().get(pk=event_pk)
        if event.state not in (EventState.RECEIVED, EventState.WAITING):
            return event
        try:
            data = callback_body_parse(body=event.body, content_type=event.content_type)
        except CallbackInvalid as exc:
            logger.warning("callback event %s is invalid: %s", event.pk, exc)
            return _event_settle(event, EventState.INVALID, error=str(exc))
        upload_transaction = (
            UploadTransaction.objects.select_for_update(of=("self",))
            .select_related("campaign")
            .filter(transaction_id=data.transaction_id)
            .first()
        )
        if upload_transaction is None:
            return _event_settle(event, EventState.WAITING, transaction_id=data.transaction_id)
        if event.account_id is None or upload_transaction.campaign.account_id != event.account_id:
            return _event_settle(
                event,
                EventState.IGNORED,
                transaction_id=data.transaction_id,
                error="the transaction belongs to another account's campaign, or the event to no account",
            )
        if upload_transaction.state not in OPEN_TRANSACTION_STATES:
            return _event_settle(
                event,
                EventState.IGNORED,
                transaction_id=data.transaction_id,
                upload_transaction=upload_transaction,
                error=f"the transaction is already {upload_transaction.state}: a duplicate or late callback",
            )
        _upload_transaction_finish(upload_transaction, data)
        return _event_settle(
            event, EventState.APPLIED, transaction_id=data.transaction_id, upload_transaction=upload_transaction
        )


def _event_settle(event: CallbackEvent, state: str, **fields) -> CallbackEvent:
    now = timezone.now()
    fields.setdefault("error", "")
    if state == EventState.APPLIED:
        fields["applied_at"] = now
    CallbackEvent.objects.filter(pk=event.pk, state__in=(EventState.RECEIVED, EventState.WAITING)).update(
        state=state, **fields
    )
    event.refresh_from_db()
    return event


def _upload_transaction_finish(upload_transaction: UploadTransaction, data: CallbackData) -> None:
    """Move the transaction to completed / failed and its leads to what the callback proves. With a usable
    failed file the leads stay `sent` until the job has read it: only the file says which rows failed."""
    now = timezone.now()
    url_problem = failed_file_url_check(data.failed_file_path) if data.failed_file_path else ""
    failed_file_url = data.failed_file_path if data.failed_file_path and not url_problem else ""
    attention = ""
    if data.status == FAIL:
        state, lead_status = TxState.FAILED, Lead.Status.FAILED
        reason = f"CloudAgent refused the batch: {data.message or 'no message'}"
    elif failed_file_url:
        state, lead_status, reason = TxState.COMPLETED, None, ""
    else:
        state = TxState.COMPLETED
        attention = _success_doubt(upload_transaction, data, url_problem)
        lead_status, reason = (Lead.Status.UNCONFIRMED, UNCONFIRMED_REASON) if attention else (Lead.Status.UPLOADED, "")
    UploadTransaction.objects.filter(pk=upload_transaction.pk, state__in=OPEN_TRANSACTION_STATES).update(
        state=state,
        callback=data.raw,
        total_uploaded=data.total_uploaded,
        numbers_processed=data.numbers_processed,
        numbers_not_processed=data.numbers_not_processed,
        failed_file_url=failed_file_url,
        attention=attention[:500],
        provider_started_at=data.started_at,
        provider_finished_at=data.finished_at,
        finished_at=now,
        updated_at=now,
    )
    if lead_status:
        _leads_settle(upload_transaction.pk, {(lead_status, reason): None})
    if state == TxState.COMPLETED and failed_file_url:
        pk = upload_transaction.pk
        transaction.on_commit(lambda: _failed_file_fetch_enqueue(pk), robust=True)


def _success_doubt(upload_transaction: UploadTransaction, data: CallbackData, url_problem: str) -> str:
    """Why a Success without a usable failed file does not prove every lead arrived ("" when it does). Counts
    are checked against each other and against what we sent, defensively: any may be missing."""
    total, processed, not_processed = data.total_uploaded, data.numbers_processed, data.numbers_not_processed
    if not_processed is None and total is not None and processed is not None:
        not_processed = max(total - processed, 0)
    if url_problem:
        return f"CloudAgent sent a failed file we refused ({url_problem}): leads marked unconfirmed"
    if not_processed is None:
        return "CloudAgent's Success callback gave no usable counts: leads marked unconfirmed"
    if not_processed > 0:
        return (
            f"CloudAgent did not process {not_processed} of {total if total is not None else '?'} rows and sent "
            "no failed file naming them: leads marked unconfirmed"
        )
    if total is not None and processed is not None and processed != total:
        return f"CloudAgent's counts disagree ({processed} of {total} processed, none not processed): leads unconfirmed"
    if total is not None and total < upload_transaction.row_count:
        return f"CloudAgent counted {total} rows of the {upload_transaction.row_count} sent: leads marked unconfirmed"
    return ""


def _leads_settle(upload_transaction_id: int, outcomes: dict[tuple[str, str], list[int] | None]) -> None:
    """Set lead statuses, one set-based UPDATE per (status, reason), touching only leads still `sent`/`queued`
    so nothing moves backwards. The leads are locked in primary-key order first: two overlapping writers then
    queue behind each other instead of deadlocking (perf-notes.md, Callback). None means every open lead."""
    open_leads = Lead.objects.filter(upload_transaction_id=upload_transaction_id, status__in=OPEN_LEAD_STATUSES)
    locked = set(open_leads.order_by("id").select_for_update().values_list("id", flat=True))
    now = timezone.now()
    for (status, reason), ids in outcomes.items():
        chosen = locked if ids is None else locked.intersection(ids)
        if chosen:
            open_leads.filter(id__in=sorted(chosen)).update(status=status, status_reason=reason[:500], updated_at=now)


# --- The failed file ---------------------------------------------------------------------------------------


def upload_transactions_failed_file_pending(*, older_than: timedelta = timedelta(minutes=5)):
    """Completed transactions still waiting on their failed file: leads open past the moment the job should
    have settled them. Only the sweep needs them; a healthy job finishes within seconds."""
    return (
        UploadTransaction.objects.filter(
            state=TxState.COMPLETED,
            finished_at__lt=timezone.now() - older_than,
            leads__status__in=OPEN_LEAD_STATUSES,
        )
        .exclude(failed_file_url="")
        .distinct()
    )


def _failed_file_fetch_enqueue(upload_transaction_id: int) -> bool:
    """One download job per transaction: its id is fixed, and a job still queued, running or waiting for a
    retry is left alone, so a sweep run while it backs off does not start a second chain of retries."""
    from uploads.jobs import failed_file_fetch_job

    queue = django_rq.get_queue("callbacks")
    job_id = f"failed-file-fetch-{upload_transaction_id}"
    existing = queue.fetch_job(job_id)
    if existing is not None and existing.get_status() in PENDING_JOB_STATUSES:
        return False
    queue.enqueue(failed_file_fetch_job, upload_transaction_id, job_id=job_id, retry=FAILED_FILE_RETRY)
    return True


def failed_file_fetch(*, upload_transaction: UploadTransaction) -> str:
    """Download the failed file of a completed transaction, keep a copy, and settle its leads: the rows named in
    the file `failed` with their reason, the others `uploaded`. If the file cannot be had or read, the leads
    become `unconfirmed` and the transaction says why (`attention`).

    Raises FailedFileRetry on a transient problem while the URL is still valid (24 h from the callback) so the
    job is retried; after that the leads are settled as unconfirmed. Returns a one-line summary for the job."""
    upload_transaction = UploadTransaction.objects.select_related("campaign").get(pk=upload_transaction.pk)
    if upload_transaction.state != TxState.COMPLETED or not upload_transaction.failed_file_url:
        return "no failed file to fetch"
    if not upload_transaction.leads.filter(status__in=OPEN_LEAD_STATUSES).exists():
        return "every lead is already settled"
    try:
        if upload_transaction.failed_file:
            with upload_transaction.failed_file.open("rb") as stored:
                content = stored.read()
        else:
            content = failed_file_download(upload_transaction.failed_file_url)
            _failed_file_store(upload_transaction, content)
        rows = failed_file_read(content)
    except FailedFileTemporarilyUnavailable as exc:
        # The earlier of CloudAgent's end time and our receipt: a provider clock or zone gone wrong must not
        # stretch the retries past the URL's life.
        issued = min(
            moment
            for moment in (upload_transaction.provider_finished_at, upload_transaction.finished_at, timezone.now())
            if moment is not None
        )
        if timezone.now() < issued + FAILED_FILE_URL_TTL:
            raise FailedFileRetry(str(exc)) from exc
        return _failed_file_given_up(upload_transaction, f"{exc}, and its URL has now expired")
    except FailedFileUnavailable as exc:
        return _failed_file_given_up(upload_transaction, str(exc))
    return _failed_file_apply(upload_transaction, rows)


def failed_file_download(url: str) -> bytes:
    """GET the pre-signed URL with a timeout on every wait and on the whole download, and a size cap."""
    problem = failed_file_url_check(url)
    if problem:
        raise FailedFileUnavailable(f"failed file URL refused: {problem}")
    cap = settings.CLOUDAGENT_FAILED_FILE_MAX_BYTES
    seconds = settings.CLOUDAGENT_FAILED_FILE_TIMEOUT
    deadline = time.monotonic() + seconds
    try:
        with _get_checking_every_hop(url, seconds) as response:
            status = response.status_code
            if status in (408, 425, 429) or status >= 500:
                raise FailedFileTemporarilyUnavailable(f"the failed file server answered HTTP {status}")
            if status != 200:
                raise FailedFileUnavailable(f"the failed file server answered HTTP {status} (expired or refused)")
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > cap:
                raise FailedFileUnavailable(f"the failed file is {declared} bytes, over the {cap}-byte cap")
            chunks, size = [], 0
            for chunk in response.iter_content(64 * 1024):
                size += len(chunk)
                if size > cap:
                    raise FailedFileUnavailable(f"the failed file is over the {cap}-byte cap")
                if time.monotonic() > deadline:
                    raise FailedFileTemporarilyUnavailable(f"the download took over {seconds} s")
                chunks.append(chunk)
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
        raise FailedFileTemporarilyUnavailable(f"the failed file could not be downloaded: {exc}") from exc
    except (requests.RequestException, ValueError) as exc:  # ValueError: a URL requests cannot even encode
        raise FailedFileUnavailable(f"the failed file could not be downloaded: {exc}") from exc
    return b"".join(chunks)


def _get_checking_every_hop(url: str, seconds: float, hops: int = 3) -> requests.Response:
    """GET, following at most `hops` redirects, each to a URL failed_file_url_check accepts: an allowed host
    must not be able to redirect a worker into our own network."""
    for _ in range(hops + 1):
        response = requests.get(
            url,
            stream=True,
            timeout=(min(seconds, 10), seconds),
            headers={"User-Agent": "leadhub"},
            allow_redirects=False,
        )
        if not response.is_redirect:
            return response
        response.close()
        url = requests.compat.urljoin(url, response.headers["Location"])
        problem = failed_file_url_check(url)
        if problem:
            raise FailedFileUnavailable(f"the failed file redirects to a URL refused: {problem}")
    raise FailedFileUnavailable(f"the failed file redirects more than {hops} times")


def _failed_file_store(upload_transaction: UploadTransaction, content: bytes) -> None:
    """Keep a copy before reading it: the URL dies after 24 h and the operator may want to see the file."""
    extension = "xlsx" if content[:4] == b"PK\x03\x04" else "xls" if content[:4] == b"\xd0\xcf\x11\xe0" else "csv"
    name = f"{upload_transaction.transaction_id or upload_transaction.pk}-failed.{extension}"
    upload_transaction.failed_file.save(name, ContentFile(content), save=False)
    UploadTransaction.objects.filter(pk=upload_transaction.pk).update(
        failed_file=upload_transaction.failed_file.name, updated_at=timezone.now()
    )


def failed_file_read(content: bytes) -> FailedFileRows:
    """Rows of a failed file, CSV or a spreadsheet (its format is undocumented: contract.md infers CSV or XLSX
    with the request's headers and a reason column). The phone column is found by its header, any case."""
    if content[:4] in (b"PK\x03\x04", b"\xd0\xcf\x11\xe0"):
        try:
            spreadsheet_check(content, limits=SheetLimits.from_settings(settings))
        except SpreadsheetRefused as exc:
            raise FailedFileUnavailable(f"the failed file is refused: {exc}") from exc
        try:
            workbook = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(content))
            table = workbook.get_sheet_by_index(0).to_python()
        except Exception as exc:  # calamine raises several unrelated types for a damaged file
            raise FailedFileUnavailable(f"the failed file is not a spreadsheet we can read: {exc}") from exc
    else:
        try:
            table = _csv_table(content)
        except csv.Error as exc:  # e.g. an unclosed quote: the file cannot tell which rows failed
            raise FailedFileUnavailable(f"the failed file cannot be read as CSV: {exc}") from exc
    for index, header in enumerate(table[:HEADER_SCAN_ROWS]):
        names = [re.sub(r"[^a-z0-9]", "", _cell(value).lower()) for value in header]
        phone = next((names.index(alias) for alias in PHONE_HEADERS if alias in names), None)
        if phone is None:
            continue
        reason = next((names.index(alias) for alias in REASON_HEADERS if alias in names), None)
        rows = [
            (_cell(row[phone]), _cell(row[reason]) if reason is not None and reason < len(row) else "")
            for row in table[index + 1 :]
            if phone < len(row) and _cell(row[phone])
        ]
        return FailedFileRows(
            phone_header=_cell(header[phone]),
            reason_header=_cell(header[reason]) if reason is not None else "",
            rows=rows,
        )
    seen = ", ".join(_cell(v) for v in table[0] if _cell(v))[:200] if table else "none, the file is empty"
    raise FailedFileUnavailable(f"the failed file has no phone number column (headers: {seen})")


def _csv_table(content: bytes) -> list[list[str]]:
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = content.decode("cp1252", "replace")
    # The delimiter the first line uses most: Excel in some locales writes ";", and a reason column full of
    # commas would fool a sniffer reading the whole sample.
    first_line = text.split("\n", 1)[0]
    delimiter = max(",;\t|", key=first_line.count) if any(c in first_line for c in ",;\t|") else ","
    return list(csv.reader(io.StringIO(text), delimiter=delimiter))


def _cell(value) -> str:
    """Spreadsheets hand numbers back as floats: 9812345678.0 is the phone 9812345678."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return _text(value)


def _resent_because_unsure(upload_transaction: UploadTransaction) -> bool:
    """A batch we re-sent with checkDuplicate=true because CloudAgent may already have taken it (an ambiguous
    attempt, or an operator's re-push of unconfirmed leads): for it, "already exists" means an earlier attempt
    got through, so the lead is in the dialer."""
    return bool(upload_transaction.ambiguous_attempts or upload_transaction.options.get("resend"))


def _failed_file_apply(upload_transaction: UploadTransaction, found: FailedFileRows) -> str:
    """Match the file's rows to the transaction's leads by number. The file holds the number as we sent it
    (national digits by default), so both sides are compared in E.164 for the campaign's region."""
    region = upload_transaction.campaign.phone_region
    reasons: dict[str, str] = {}
    unreadable = 0
    for phone, reason in found.rows:
        try:
            reasons.setdefault(normalize_phone(phone, region), reason[:500] or GENERIC_FAILED_REASON)
        except PhoneError:
            unreadable += 1
    with transaction.atomic():
        _upload_transaction_lock(upload_transaction.pk)
        leads = dict(
            Lead.objects.filter(upload_transaction=upload_transaction, status__in=OPEN_LEAD_STATUSES).values_list(
                "phone_number", "id"
            )
        )
        outcomes: dict[tuple[str, str], list[int]] = defaultdict(list)
        resent = _resent_because_unsure(upload_transaction)
        # A row naming no open lead may be one of them written another way: the unnamed leads are then not
        # proven uploaded.
        unmatched = unreadable + sum(1 for phone in reasons if phone not in leads)
        unnamed = (Lead.Status.UNCONFIRMED, UNMATCHED_ROWS_REASON) if unmatched else (Lead.Status.UPLOADED, "")
        for phone, lead_id in leads.items():
            if phone in reasons and resent and ALREADY_HELD.search(reasons[phone]):
                outcomes[(Lead.Status.UPLOADED, ALREADY_HELD_REASON)].append(lead_id)
            elif phone in reasons:
                outcomes[(Lead.Status.FAILED, reasons[phone])].append(lead_id)
            else:
                outcomes[unnamed].append(lead_id)
        _leads_settle(upload_transaction.pk, outcomes)
        failed = sum(len(ids) for (status, _), ids in outcomes.items() if status == Lead.Status.FAILED)
        held = len(outcomes.get((Lead.Status.UPLOADED, ALREADY_HELD_REASON), ()))
        strangers = len(reasons) - failed - held + unreadable
        notes = []
        if strangers:
            notes.append(f"{strangers} rows of the failed file match none of this batch's open leads")
        expected = upload_transaction.numbers_not_processed
        if expected is not None and expected != failed + held:
            notes.append(f"CloudAgent counted {expected} rows not processed, its failed file named {failed}")
        if notes:
            UploadTransaction.objects.filter(pk=upload_transaction.pk).update(
                attention="; ".join(notes)[:500], updated_at=timezone.now()
            )
    return (
        f"{failed} leads failed, {len(leads) - failed} {'unconfirmed' if unmatched else 'uploaded'} "
        f"({len(found.rows)} rows in the failed file, "
        f"phone column {found.phone_header!r}, reason column {found.reason_header or '(none)'!r})"
    )


def _upload_transaction_lock(upload_transaction_id: int) -> None:
    """Every writer locks the transaction row before its leads, so no two of them take locks in opposite order."""
    list(UploadTransaction.objects.select_for_update().filter(pk=upload_transaction_id).values_list("pk"))


def _failed_file_given_up(upload_transaction: UploadTransaction, problem: str) -> str:
    logger.warning("transaction %s: %s; its leads are unconfirmed", upload_transaction, problem)
    with transaction.atomic():
        _upload_transaction_lock(upload_transaction.pk)
        _leads_settle(upload_transaction.pk, {(Lead.Status.UNCONFIRMED, UNCONFIRMED_REASON): None})
        UploadTransaction.objects.filter(pk=upload_transaction.pk).update(
            attention=f"{problem}: leads marked unconfirmed"[:500], updated_at=timezone.now()
        )
    return problem


# --- Selectors ---------------------------------------------------------------------------------------------


def callback_overdue_cutoff() -> datetime:
    return timezone.now() - timedelta(seconds=settings.CLOUDAGENT_CALLBACK_OVERDUE_SECONDS)


def upload_transactions_overdue():
    """Transactions CloudAgent queued whose callback has not come within CLOUDAGENT_CALLBACK_OVERDUE_SECONDS of
    being sent (of being created, if the push recorded no send time)."""
    return UploadTransaction.objects.alias(waiting_since=Coalesce("sent_at", "created_at")).filter(
        state=TxState.QUEUED, waiting_since__lt=callback_overdue_cutoff()
    )


def upload_transaction_is_overdue(upload_transaction: UploadTransaction, *, cutoff: datetime) -> bool:
    """The same rule as upload_transactions_overdue, for one row already loaded (an admin column)."""
    waiting_since = upload_transaction.sent_at or upload_transaction.created_at
    return upload_transaction.state == TxState.QUEUED and waiting_since < cutoff
