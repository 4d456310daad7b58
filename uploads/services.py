"""The batch state machine: every write to upload transactions, to the push states of their leads and to the
callback events applied to them goes through here, whether a push, a callback or a sweep causes it.

The life of a batch (docs/cloudagent-contract.md has the provider's side):
  leads_push           new leads -> batches of <= CLOUDAGENT_BATCH_SIZE: transaction `pending`, leads `queued`
  ..._claim_next       the account's dispatcher takes the fairest ready batch: `pending` -> `sending`
  ..._claim_first      (the first batch of many accounts at once, in a few queries)
  ..._prepare          its rows, kept from the cut or built again, ready ahead of its slot (a batch left
                       empty ends `error`)
  ..._send             in the account's slot, one HTTP request, with no database transaction open across it;
  ..._record           then one outcome:
                       accepted -> `queued` + leads `sent`; rate-limited / transient -> back to `pending`;
                       refused -> `error` + leads `failed`.
  ..._recover_stale    a batch left `sending` by a killed worker goes back to `pending`, re-sent with
  ..._give_back        checkDuplicate=true if its request may have left (CloudAgent may already hold it).
  callback_event_apply the callback: `queued` -> `completed` / `failed`, leads `uploaded` / `failed` /
                       `unconfirmed`, or left `sent` until the failed-rows file says which rows failed
  failed_file_fetch    the failed-rows file settles the leads of a completed batch
Every state change checks the current state in the same UPDATE, so two workers can never both win.

Nothing documents callback retries, ordering or signatures, so a callback may come twice, late, out of order, or
before the push has stored the transactionId: nothing moves backwards, a second application changes nothing, a
callback for an unknown transactionId waits until the push records it, and the transaction row is locked before
its leads, which are locked in primary-key order, so overlapping writers serialise instead of deadlocking
(docs/performance.md, Callback).
"""

import json
import logging
import random
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import InterfaceError, OperationalError, close_old_connections, connection, transaction
from django.db.models import Count, F, Max, Min, Q, Value
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign, CloudAgentAccount, Lead
from campaigns.normalize import PhoneError, clean_name, format_phone, normalize_phone
from cloudagent.callbacks import FAIL, CallbackData, callback_body_parse
from cloudagent.client import AddBulkDataResult, CloudAgentClient, failed_file_url_problem
from cloudagent.errors import (
    AuthenticationError,
    CallbackInvalid,
    CampaignError,
    CloudAgentError,
    FailedFileTemporarilyUnavailable,
    FailedFileUnavailable,
    RateLimitedError,
    TransientError,
)
from cloudagent.failed_files import FailedFileRows, failed_file_read
from cloudagent.rules import build_rows
from cloudagent.safe_http import FetchPolicy, parse_networks
from cloudagent.spreadsheet_guard import SheetLimits
from uploads import queues, selectors
from uploads.models import (
    CallbackEvent,
    DispatchLease,
    DispatchNode,
    PushRequest,
    PushRequestLead,
    UploadTransaction,
)
from uploads.ratelimit import SlotPacer, SlotTimeout
from uploads.selectors import push_eta_seconds, upload_transactions_overdue

logger = logging.getLogger("leadhub.push")

# A transactionId proves CloudAgent queued the batch even if our worker has not yet moved it to `queued`.
OPEN_TRANSACTION_STATES = (
    UploadTransaction.State.PENDING,
    UploadTransaction.State.SENDING,
    UploadTransaction.State.QUEUED,
)
# `queued` too: the push may record the transactionId a moment before it moves the leads to `sent`.
OPEN_LEAD_STATUSES = (Lead.Status.SENT, Lead.Status.QUEUED)
FAILED_FILE_URL_TTL = timedelta(hours=24)  # docs/cloudagent-contract.md, Failed-rows file: the URL lives 24 hours
# CloudAgent's reason texts for a number it holds are not documented and differ between its APIs
# (docs/cloudagent-contract.md, Related provider facts): the older ones say "Number Already Exist", V4
# "Duplicate PhoneNumber". On a re-sent batch any such wording means an earlier attempt got through.
ALREADY_HELD = re.compile(r"duplicate|already\s*(?:exist|present|there|uploaded|added|in)", re.IGNORECASE)
ALREADY_HELD_REASON = "CloudAgent already held it: an earlier attempt of this batch got through"
GENERIC_FAILED_REASON = "CloudAgent did not add this number (its failed file gives no reason)"
UNCONFIRMED_REASON = "CloudAgent did not process every row of this batch and did not say which"
UNMATCHED_ROWS_REASON = "CloudAgent's failed file names rows we cannot match to this batch's leads"

# Leads an operator may push: new ones, and ones CloudAgent or our checks refused, once fixed.
PUSHABLE_STATUSES = (Lead.Status.NEW, Lead.Status.FAILED, Lead.Status.INVALID, Lead.Status.UNCONFIRMED)
CHUNK = 5000
# Pauses between tries to record a send's outcome through a database outage: about a minute and a half in all.
OUTCOME_WRITE_DELAYS = (0.5, 1, 2, 4, 8, 15, 30, 30)


def callback_url_for(account: CloudAgentAccount) -> str:
    """The URL CloudAgent posts results to; its secret is the credential (CloudAgent signs nothing)."""
    return settings.LEADHUB_PUBLIC_URL + reverse("cloudagent-callback", kwargs={"secret": account.callback_secret})


# What a lead contributes to its CloudAgent row; read as named tuples, not models, for million-lead pushes.
LEAD_ROW_FIELDS = ("pk", "phone_number", "name", "priority", "expiry_date", "agent_id", "skill", "extra")


def lead_values(lead, campaign: Campaign) -> dict:
    """A lead (a Lead, or a row of LEAD_ROW_FIELDS) as CloudAgent columns; the extra columns never override the
    standard ones."""
    return {
        **(lead.extra or {}),
        "PhoneNumber": format_phone(lead.phone_number, campaign.phone_region, campaign.phone_format),
        "Name": clean_name(lead.name)[0],
        "Priority": lead.priority,
        "ExpiryDate": lead.expiry_date,
        "AgentId": lead.agent_id,
        "skill": lead.skill,
    }


@dataclass
class PushSummary:
    """What a push will do. `background`: the selection was too big to batch in the request, so a job batches
    it; `leads` and `batches` are then what it will take, before our own checks refuse any."""

    leads: int = 0
    batches: int = 0
    eta_seconds: float = 0.0
    invalid: int = 0
    not_pushable: dict[str, int] = field(default_factory=dict)
    background: bool = False

    def as_dict(self) -> dict:
        return {
            "leads": self.leads,
            "batches": self.batches,
            "eta_seconds": round(self.eta_seconds, 1),
            "invalid": self.invalid,
            "not_pushable": self.not_pushable,
            "background": self.background,
        }


def push_summary_messages(summary: PushSummary) -> list[tuple[str, str]]:
    """What the operator is told about a push, in the same words by the admin and the CLI: (level, text) pairs,
    the level one of "success", "warning", "info"."""
    told = []
    if summary.background:
        told.append(
            (
                "success",
                f"Batching {summary.leads} lead(s) in the background into about {summary.batches} batch(es) for "
                f"CloudAgent; the rate limit puts the last batch about {summary.eta_seconds:.0f} s from now. "
                "Leads our checks refuse will show as 'invalid'.",
            )
        )
    elif summary.leads:
        told.append(
            (
                "success",
                f"Queued {summary.leads} lead(s) in {summary.batches} batch(es) for CloudAgent; "
                f"the rate limit puts the last batch about {summary.eta_seconds:.0f} s from now.",
            )
        )
    if summary.invalid:
        told.append(
            (
                "warning",
                f"{summary.invalid} lead(s) failed our checks and are now 'invalid' (see the reason); fix, then push.",
            )
        )
    if summary.not_pushable:
        left = ", ".join(f"{count} {status}" for status, count in sorted(summary.not_pushable.items()))
        told.append(("warning", f"Not pushed, because of their status: {left}."))
    if not (summary.leads or summary.invalid or summary.not_pushable):
        told.append(("info", "There was nothing to push."))
    return told


def leads_push_request(
    *, leads, user=None, statuses: Iterable[str] = PUSHABLE_STATUSES, check_duplicate: bool = False, redial: str = ""
) -> PushSummary:
    """The admin's and the CLI's entry point: answers at once. A selection of up to LEADHUB_PUSH_INLINE_LEADS
    pushable leads is batched now; a bigger one (batching a million leads takes about a minute) is written as a
    PushRequest that a job on the `default` queue batches, and the answer gives the counts and ETA it will have."""
    statuses = list(statuses)
    pushable = leads.filter(status__in=statuses)
    count = pushable.count()
    if count <= settings.LEADHUB_PUSH_INLINE_LEADS:
        return leads_push(leads=leads, user=user, statuses=statuses, check_duplicate=check_duplicate, redial=redial)
    summary = PushSummary(leads=count, background=True, not_pushable=_not_pushable(leads, statuses))
    summary.batches = -(-count // settings.CLOUDAGENT_BATCH_SIZE)
    account_ids = Campaign.objects.filter(pk__in=pushable.order_by().values("campaign_id").distinct()).values_list(
        "account_id", flat=True
    )
    summary.eta_seconds = _latest_eta(set(account_ids), more_batches=summary.batches)
    push_request = _push_request_create(
        leads=pushable, user=user, statuses=statuses, check_duplicate=check_duplicate, redial=redial
    )
    # Should the job be lost, every dispatch process's recovery sweep enqueues the request again.
    transaction.on_commit(lambda: queues.leads_push_enqueue(push_request_id=push_request.pk))
    return summary


@transaction.atomic
def _push_request_create(*, leads, user, statuses: list[str], check_duplicate: bool, redial: str) -> PushRequest:
    """The selection's ids are copied in one INSERT ... SELECT, whatever its size: no id passes through Python."""
    push_request = PushRequest.objects.create(
        statuses=statuses, check_duplicate=check_duplicate, redial=redial, requested_by=user
    )
    # Django selects model fields before annotations, whatever the values() order: lead id, then the request's.
    selection, params = (
        leads.order_by().annotate(request_id=Value(push_request.pk)).values("pk", "request_id").query.sql_with_params()
    )
    quote = connection.ops.quote_name
    table = quote(PushRequestLead._meta.db_table)
    columns = ", ".join(quote(PushRequestLead._meta.get_field(name).column) for name in ("lead_id", "push_request"))
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} ({columns}) {selection}", params)
    return push_request


def push_request_run(*, push_request_id: int) -> PushSummary | None:
    """Batch a PushRequest's selection; None when another run took it (a job retried or enqueued twice). Its
    selection rows go once the batches are cut: the batches are the record from then on."""
    now = timezone.now()
    claimed = PushRequest.objects.filter(pk=push_request_id, state=PushRequest.State.PENDING).update(
        state=PushRequest.State.RUNNING, started_at=now
    )
    if not claimed:
        return None
    push_request = PushRequest.objects.select_related("requested_by").get(pk=push_request_id)
    leads = Lead.objects.filter(pk__in=PushRequestLead.objects.filter(push_request=push_request).values("lead_id"))
    summary = leads_push(
        leads=leads,
        user=push_request.requested_by,
        statuses=push_request.statuses,
        check_duplicate=push_request.check_duplicate,
        redial=push_request.redial,
    )
    with transaction.atomic():
        PushRequest.objects.filter(pk=push_request_id, state=PushRequest.State.RUNNING).update(
            state=PushRequest.State.DONE, summary=summary.as_dict(), finished_at=now
        )
        PushRequestLead.objects.filter(push_request_id=push_request_id).delete()
    return summary


def push_requests_recover() -> int:
    """Enqueue again the push requests whose job was lost: still pending a while after they were written (Redis
    down at commit, or emptied), or running past the job's timeout (a worker killed mid-way). Batching again is
    safe: leads already cut into batches are no longer in the request's statuses."""
    stalled = selectors.push_requests_stalled()
    for push_request_id in stalled:
        reset = PushRequest.objects.filter(pk=push_request_id).exclude(state=PushRequest.State.DONE)
        if reset.update(state=PushRequest.State.PENDING, started_at=None):
            transaction.on_commit(lambda pk=push_request_id: queues.leads_push_enqueue(push_request_id=pk))
    return len(stalled)


def _not_pushable(leads, statuses) -> dict[str, int]:
    rows = leads.exclude(status__in=statuses).order_by().values("status").annotate(n=Count("id"))
    return {row["status"]: row["n"] for row in rows}


def leads_push(
    *,
    leads,
    user=None,
    statuses: Iterable[str] = PUSHABLE_STATUSES,
    check_duplicate: bool = False,
    redial: str = "",
):
    """Put the given leads into batches for their campaigns' dispatchers; answers at once with counts and ETA.

    Leads our own checks refuse become `invalid` with the reason and take no slot in a batch. Leads in other
    states are counted in `not_pushable`, never silently skipped. `check_duplicate` forces checkDuplicate=true
    (re-pushes of leads CloudAgent may already hold); `redial` (its reason) asks for another dial of leads it
    holds (leads_push_redial).
    """
    statuses = list(statuses)
    summary = PushSummary(not_pushable=_not_pushable(leads, statuses))
    accounts = set()
    campaign_ids = leads.filter(status__in=statuses).order_by().values_list("campaign_id", flat=True).distinct()
    for campaign in Campaign.objects.filter(pk__in=list(campaign_ids)).select_related("account"):
        _campaign_batches(
            campaign=campaign,
            leads=leads.filter(campaign=campaign, status__in=statuses),
            statuses=statuses,
            user=user,
            check_duplicate=check_duplicate,
            redial=redial,
            summary=summary,
        )
        accounts.add(campaign.account_id)
    # No job is enqueued: dispatch processes find the batches in the database, so a push survives a Redis loss
    # (uploads/dispatcher.py); the nudge only saves them waiting for their next poll.
    summary.eta_seconds = _latest_eta(accounts)
    if summary.batches:
        transaction.on_commit(queues.dispatch_wake)
    return summary


def leads_push_redial(*, leads, reason: str, user=None) -> PushSummary:
    """Another dial for leads already in the dialer (`uploaded`): sent with checkDuplicate=false whatever the
    campaign says, and the batch's options keep the reason (calls/services.py chooses the leads)."""
    return leads_push_request(leads=leads, user=user, statuses=[Lead.Status.UPLOADED], redial=reason)


def campaign_push_new(*, campaign: Campaign, user=None) -> PushSummary:
    return leads_push_request(leads=Lead.objects.filter(campaign=campaign), user=user, statuses=[Lead.Status.NEW])


def _campaign_batches(*, campaign, leads, statuses, user, check_duplicate, redial, summary) -> None:
    """Check every lead as the client would, then cut the good ones into batches, a chunk at a time so a
    million-lead push never holds more than CHUNK leads in memory."""
    batch_size = settings.CLOUDAGENT_BATCH_SIZE
    options = _request_options(campaign, check_duplicate=check_duplicate, redial=redial)
    last_id = 0
    carry_ids: list[int] = []
    carry_rows: list[list] = []
    while True:
        chunk = list(leads.filter(pk__gt=last_id).order_by("pk").values_list(*LEAD_ROW_FIELDS, named=True)[:CHUNK])
        if not chunk:
            break
        last_id = chunk[-1].pk
        built = build_rows(campaign.column_map, ((lead.pk, lead_values(lead, campaign)) for lead in chunk))
        summary.invalid += _leads_mark_invalid(built.rejected, statuses=statuses)
        carry_ids.extend(built.keys)
        carry_rows.extend(built.rows)
        while len(carry_ids) >= batch_size:
            _batch_create(campaign, carry_ids[:batch_size], carry_rows[:batch_size], statuses, options, user, summary)
            carry_ids, carry_rows = carry_ids[batch_size:], carry_rows[batch_size:]
    if carry_ids:
        _batch_create(campaign, carry_ids, carry_rows, statuses, options, user, summary)


def _request_options(campaign: Campaign, *, check_duplicate: bool = False, redial: str = "") -> dict:
    """`resend` marks a batch of leads CloudAgent may already hold: for it, "Number Already Exist" in the
    failed file means the lead is in the dialer (failed_file_fetch). `redial` marks a batch sent for another dial of
    numbers CloudAgent holds: checkDuplicate and isDelete off, or CloudAgent would skip them."""
    if redial:
        return {"checkDuplicate": False, "isDelete": False, "start": campaign.start_after_upload, "redial": redial}
    return {
        "checkDuplicate": campaign.check_duplicate or check_duplicate,
        "isDelete": campaign.skip_existing,
        "start": campaign.start_after_upload,
        "resend": check_duplicate,
    }


def _leads_mark_invalid(rejections, *, statuses, unlink: bool = False) -> int:
    """Leads our own checks refuse become `invalid` with their reason, unless they left `statuses` meanwhile:
    locked and written in two statements per call, whatever the number of leads. `unlink` takes them out of
    their batch."""
    reasons = {rejection.key: rejection.reason[:500] for rejection in rejections}
    if not reasons:
        return 0
    now = timezone.now()
    with transaction.atomic():
        leads = list(
            Lead.objects.select_for_update()
            .filter(pk__in=list(reasons), status__in=statuses)
            .order_by("pk")
            .only("pk", "upload_transaction")
        )
        for lead in leads:
            lead.status, lead.status_reason, lead.updated_at = Lead.Status.INVALID, reasons[lead.pk], now
            if unlink:
                lead.upload_transaction = None
        fields = ["status", "status_reason", "updated_at", *(["upload_transaction"] if unlink else [])]
        Lead.objects.bulk_update(leads, fields, batch_size=500)
    return len(leads)


@transaction.atomic
def _batch_create(campaign, lead_ids, rows, statuses, options, user, summary) -> None:
    """One transaction per batch: the leads that are still pushable move to `queued` in the same UPDATE that
    ties them to the batch, so a lead is never in two live batches. The rows just built for them are kept on
    the batch, stamped with the leads' new `updated_at`, so its send need not build them again (_rows_as_cut)."""
    now = timezone.now()
    batch = UploadTransaction.objects.create(
        campaign=campaign,
        options=options,
        pushed_by=user,
        row_count=len(lead_ids),
        built_rows=json.dumps(rows, separators=(",", ":")),
        rows_built_at=now,
    )
    taken = Lead.objects.filter(pk__in=lead_ids, status__in=statuses).update(
        status=Lead.Status.QUEUED, status_reason="", upload_transaction=batch, updated_at=now
    )
    if not taken:
        batch.delete()
        return
    if taken != len(lead_ids):  # some changed state since they were read: the batch holds the rest, rebuilt
        UploadTransaction.objects.filter(pk=batch.pk).update(row_count=taken, built_rows="", rows_built_at=None)
    summary.leads += taken
    summary.batches += 1


def _latest_eta(account_ids, *, more_batches: int = 0) -> float:
    """A push over several accounts is done when the slowest account is."""
    return max((push_eta_seconds(account_id=a, more_batches=more_batches) for a in account_ids), default=0.0)


# --- the dispatcher's steps ---------------------------------------------------------------------------


def upload_transaction_claim_next(*, account_id: int, last_served: dict[int, float]) -> UploadTransaction | None:
    """Take the next batch to send: campaigns sharing the account take turns (the one served longest ago goes
    first), so one big push cannot starve another campaign; within a campaign, oldest batch first."""
    now = timezone.now()
    oldest = {campaign_id: batch_id for _, campaign_id, batch_id in _oldest_ready(account_ids=[account_id], now=now)}
    for campaign_id in sorted(oldest, key=lambda cid: (last_served.get(cid, float("-inf")), cid)):
        # Should another process have taken the batch, the account's next step looks again.
        if _claim(UploadTransaction.objects.filter(pk=oldest[campaign_id]), now=now):
            return UploadTransaction.objects.select_related("campaign__account").get(pk=oldest[campaign_id])
    return None


def upload_transactions_claim_first(*, account_ids: Iterable[int]) -> list[UploadTransaction]:
    """Claim the next batch of each of these accounts together: a dispatcher that takes a hundred accounts at
    once (one push over all of them) must not pay three queries per account before their first sends. Each
    account's turn starts with its lowest-numbered campaign, as upload_transaction_claim_next's would."""
    now = timezone.now()
    first: dict[int, tuple[int, int]] = {}
    for account_id, campaign_id, batch_id in _oldest_ready(account_ids=account_ids, now=now):
        first[account_id] = min(first.get(account_id, (campaign_id, batch_id)), (campaign_id, batch_id))
    ids = [batch_id for _, batch_id in first.values()]
    if not ids:
        return []
    with transaction.atomic():  # claimed and read together: a claim nobody read would hold its batch
        _claim(UploadTransaction.objects.filter(pk__in=ids), now=now)
        return list(
            UploadTransaction.objects.filter(pk__in=ids, state=UploadTransaction.State.SENDING, claimed_at=now)
            .select_related("campaign__account")
            .order_by("pk")
        )


def _oldest_ready(*, account_ids: Iterable[int], now) -> list[tuple[int, int, int]]:
    """(account, campaign, oldest batch) for each campaign of these accounts with a batch ready to send now."""
    ready = selectors.upload_transactions_sendable(account_ids=account_ids).filter(
        Q(not_before__isnull=True) | Q(not_before__lte=now)
    )
    return list(ready.order_by().values_list("campaign__account_id", "campaign_id").annotate(first=Min("pk")))


def _claim(batches, *, now) -> int:
    """`pending` -> `sending`, claimed now. No request for this claim yet (`last_attempt_at` cleared): recovery tells
    a batch never sent from one maybe sent by it."""
    return batches.filter(state=UploadTransaction.State.PENDING).update(
        state=UploadTransaction.State.SENDING, claimed_at=now, last_attempt_at=None, updated_at=now
    )


@dataclass
class PreparedBatch:
    """A claimed batch with its rows built and its request fields fixed: what is left is the slot and the call."""

    batch: UploadTransaction
    rows: list
    options: dict
    callback_url: str


def upload_transactions_prepare(*, batches: list[UploadTransaction]) -> list[PreparedBatch]:
    """Get claimed batches ready to send ahead of their slots (the database work a send needs, done before the
    slot so it does not eat into the pace): the rows kept from the cut where they still hold, else built again.
    Leads our checks now refuse leave their batch; a batch left empty ends here and is not returned."""
    kept = _rows_as_cut(batches)
    prepared = (_prepare(batch, kept.get(batch.pk)) for batch in batches)
    return [batch for batch in prepared if batch is not None]


def _prepare(batch: UploadTransaction, rows: list | None) -> PreparedBatch | None:
    campaign = batch.campaign
    if rows is None:
        leads = Lead.objects.filter(upload_transaction=batch, status=Lead.Status.QUEUED).order_by("pk")
        values = leads.values_list(*LEAD_ROW_FIELDS, named=True)
        built = build_rows(campaign.column_map, ((lead.pk, lead_values(lead, campaign)) for lead in values))
        _leads_mark_invalid(built.rejected, statuses=[Lead.Status.QUEUED], unlink=True)
        if not built.rows:
            _finish_error(
                batch,
                "nothing left to send: every lead was refused by our own checks",
                lead_status=None,
                attempted=False,
            )
            return None
        rows = built.rows
    # An attempt whose outcome was unknown may have reached CloudAgent: every re-send skips its duplicates.
    options = {**batch.options, "checkDuplicate": bool(batch.options.get("checkDuplicate") or batch.ambiguous_attempts)}
    callback_url = callback_url_for(campaign.account)
    return PreparedBatch(batch=batch, rows=rows, options=options, callback_url=callback_url)


def _rows_as_cut(batches: list[UploadTransaction]) -> dict[int, list]:
    """By batch id, the rows built when the batch was cut, where they still say what its leads say: the same
    leads are in it and neither they nor the campaign changed since (an edit stamps `updated_at`). A push's
    first sends go out at once, with no time to build ahead: reading 500 leads and building their rows would
    be most of their cost (docs/performance.md, "Push pacing"). One query for any number of batches."""
    kept = [
        batch
        for batch in batches
        if batch.built_rows and batch.rows_built_at and batch.campaign.updated_at <= batch.rows_built_at
    ]
    if not kept:
        return {}
    in_batches = (
        Lead.objects.filter(upload_transaction__in=[batch.pk for batch in kept], status=Lead.Status.QUEUED)
        .order_by()
        .values_list("upload_transaction")
        .annotate(leads=Count("pk"), changed=Max("updated_at"))
    )
    now_in = {batch_id: (leads, changed) for batch_id, leads, changed in in_batches}
    found = {}
    for batch in kept:
        leads, changed = now_in.get(batch.pk, (0, None))
        rows = json.loads(batch.built_rows)
        # Leads only ever leave a batch, so the same count is the same leads.
        if leads == len(rows) and changed <= batch.rows_built_at:
            found[batch.pk] = rows
    return found


def upload_transaction_give_back(*, batch: UploadTransaction) -> bool:
    """A claimed batch its dispatcher will not finish (it lost the account, is stopping, or could not learn or
    record the outcome): back to `pending` as it was if no request left for it, else as ambiguous, re-sent with
    checkDuplicate=true. `last_attempt_at` tells the two apart: the claim clears it, the grant writes it."""
    claimed = _as_claimed(batch).filter(state=UploadTransaction.State.SENDING)
    now = timezone.now()
    if claimed.filter(last_attempt_at__isnull=True).update(
        state=UploadTransaction.State.PENDING, claimed_at=None, updated_at=now
    ):
        return True
    return bool(
        claimed.update(
            state=UploadTransaction.State.PENDING,
            claimed_at=None,
            ambiguous_attempts=F("ambiguous_attempts") + 1,
            last_error="its outcome is unknown; re-sending with checkDuplicate=true",
            updated_at=now,
        )
    )


@dataclass
class SentBatch:
    """A batch whose request has left, with CloudAgent's answer (or the error) not yet written down."""

    batch: UploadTransaction
    result: AddBulkDataResult | None = None
    error: CloudAgentError | None = None

    @property
    def account_refused(self) -> bool:
        """The account's credentials were refused: its other batches will be ended, nothing more to send."""
        return isinstance(self.error, AuthenticationError)


def upload_transaction_send(*, prepared: PreparedBatch, client: CloudAgentClient, pacer: SlotPacer) -> SentBatch:
    """Send one prepared batch in the account's next slot; upload_transaction_record writes what became of it.

    Raises SlotTimeout (with the seconds to wait) when the slot has not come yet: the batch stays claimed.
    No database transaction is open across the HTTP call. The slot is taken right before the request, so what
    we count is what CloudAgent sees, and its time is written first: the pacer can be seeded with it. The
    outcome is written apart so a dispatcher can send every due batch before writing any outcome (a wave of
    first sends must not wait behind the database work of the ones already answered)."""
    batch, options = prepared.batch, prepared.options
    campaign = batch.campaign
    account_id = campaign.account_id
    wait, granted_at = pacer.take(
        history=lambda: selectors.accounts_recent_attempts(
            account_ids=[account_id], seconds=pacer.window_seconds * 2
        ).get(account_id, [])
    )
    if wait > 0:
        raise SlotTimeout(f"pacer {pacer.key}: next slot in {wait:.3f} s", wait=wait)
    # What is sent is written with the grant, in one UPDATE: a query less in the slot (docs/performance.md).
    UploadTransaction.objects.filter(pk=batch.pk).update(
        last_attempt_at=datetime.fromtimestamp(granted_at, tz=UTC),
        options={**options, "callBackUrl": prepared.callback_url, "rows": len(prepared.rows)},
        row_count=len(prepared.rows),
    )
    try:
        result = client.add_bulk_data(
            campaign_name=campaign.name,
            column_map=campaign.column_map,
            rows=prepared.rows,
            check_duplicate=options["checkDuplicate"],
            is_delete=options.get("isDelete", False),
            start=options.get("start", False),
            callback_url=prepared.callback_url,
        )
    except CloudAgentError as exc:
        if isinstance(exc, RateLimitedError):
            # CloudAgent counts differently from us: skip the next slot, and a whole window if it keeps saying so.
            pacer.push_back(min(pacer.window_seconds, pacer.interval * 2 ** (batch.rate_limited + 1)))
        return SentBatch(batch=batch, error=exc)
    return SentBatch(batch=batch, result=result)


def upload_transaction_record(*, sent: SentBatch) -> str:
    """Write what became of a sent batch; returns the outcome. Retried through a database blip (_outcome_write):
    the answer exists only in this process."""
    if sent.result is not None:
        return _outcome_write(lambda: _record_accepted(sent.batch, sent.result))
    return _outcome_write(lambda: _record_refusal(sent.batch, sent.error))


def _record_refusal(batch: UploadTransaction, exc: CloudAgentError) -> str:
    if isinstance(exc, RateLimitedError):
        return _retry(batch, exc, rate_limited=True)
    if isinstance(exc, TransientError):
        return _retry(batch, exc)
    campaign = batch.campaign
    if isinstance(exc, AuthenticationError):
        _flag_problem(CloudAgentAccount.objects.filter(pk=campaign.account_id), exc.message)
        _fail_waiting(UploadTransaction.objects.filter(campaign__account_id=campaign.account_id), exc.message)
        _finish_error(batch, exc.message)
        return "account_refused"
    if isinstance(exc, CampaignError):
        _flag_problem(Campaign.objects.filter(pk=campaign.pk), exc.message)
        _fail_waiting(UploadTransaction.objects.filter(campaign=campaign), exc.message)
    _finish_error(batch, exc.message, ambiguous=exc.ambiguous)
    return "refused"


def _outcome_write(write: Callable[[], str]) -> str:
    """Write a send's outcome, retrying through a database blip: CloudAgent's answer exists only in this
    process, and an accepted batch whose answer is lost would be re-sent as ambiguous. Each try is its own
    short transaction on a fresh connection; after OUTCOME_WRITE_DELAYS the batch stays `sending` and is
    recovered as ambiguous (re-sent with checkDuplicate=true) once its lease lapses."""
    for delay in (*OUTCOME_WRITE_DELAYS, None):
        try:
            return write()
        except (OperationalError, InterfaceError):
            if delay is None:
                raise
            logger.warning("could not record a send's outcome; retrying in %.1f s", delay, exc_info=True)
            close_old_connections()
            connection.close()
            time.sleep(delay)
    raise AssertionError("unreachable")


def _record_accepted(batch: UploadTransaction, result: AddBulkDataResult) -> str:
    now = timezone.now()
    with transaction.atomic():
        # A batch recovered to `pending` meanwhile (its lease lapsed) was still accepted: record it.
        recorded = UploadTransaction.objects.filter(
            pk=batch.pk, state__in=[UploadTransaction.State.SENDING, UploadTransaction.State.PENDING]
        ).update(
            state=UploadTransaction.State.QUEUED,
            transaction_id=result.transaction_id,
            built_rows="",  # sent: CloudAgent holds them now
            response=result.raw,
            attempts=F("attempts") + 1,
            last_error="",
            sent_at=now,
            updated_at=now,
        )
        if recorded:
            Lead.objects.filter(upload_transaction=batch, status=Lead.Status.QUEUED).update(
                status=Lead.Status.SENT, status_reason="", updated_at=now
            )
            # A success clears a problem flag; the claim read both flags, and only this account's dispatcher
            # sets them, so with none read there is nothing to clear (two queries less per send).
            if batch.campaign.account.problem:
                CloudAgentAccount.objects.filter(pk=batch.campaign.account_id).exclude(problem="").update(problem="")
            if batch.campaign.problem:
                Campaign.objects.filter(pk=batch.campaign_id).exclude(problem="").update(problem="")
    if recorded:
        batch.transaction_id = result.transaction_id
        # CloudAgent can call back before its synchronous answer reaches us (docs/cloudagent-contract.md, callback).
        callback_events_apply_waiting(upload_transaction=batch)
    return "queued"


def _retry(batch: UploadTransaction, exc: CloudAgentError, *, rate_limited: bool = False) -> str:
    """Back to `pending`: a rate-limit answer waits only for the next slot; a transient error backs off
    exponentially with jitter; an ambiguous one is re-sent with checkDuplicate=true (recorded on the batch)."""
    attempts = batch.attempts + 1
    failures = attempts - batch.rate_limited  # a rate-limit answer is not a failure: it spends no retry
    if not rate_limited and failures >= settings.CLOUDAGENT_MAX_ATTEMPTS:
        _finish_error(batch, f"gave up after {attempts} attempts: {exc.message}", ambiguous=exc.ambiguous)
        return "gave_up"
    delay = 0.0
    if not rate_limited:
        ceiling = min(
            settings.CLOUDAGENT_BACKOFF_MAX_SECONDS, settings.CLOUDAGENT_BACKOFF_SECONDS * 2 ** (failures - 1)
        )
        delay = random.uniform(ceiling / 2, ceiling)
    now = timezone.now()
    changes = {
        "state": UploadTransaction.State.PENDING,
        "attempts": F("attempts") + 1,
        "last_error": exc.message[:2000],
        "not_before": now + timedelta(seconds=delay) if delay else None,
        "updated_at": now,
    }
    if rate_limited:
        changes["rate_limited"] = F("rate_limited") + 1
    if exc.ambiguous:  # the re-send derives checkDuplicate=true from this count
        changes["ambiguous_attempts"] = F("ambiguous_attempts") + 1
    _as_claimed(batch).filter(state=UploadTransaction.State.SENDING).update(**changes)
    return "rate_limited" if rate_limited else "retry"


def _as_claimed(batch: UploadTransaction):
    """The batch as this dispatcher claimed it: if its lease lapsed and another dispatcher re-claimed the batch,
    this one's late outcome must not overwrite the other's."""
    return UploadTransaction.objects.filter(pk=batch.pk, claimed_at=batch.claimed_at)


def _finish_error(
    batch: UploadTransaction,
    message: str,
    *,
    ambiguous: bool = False,
    lead_status=Lead.Status.FAILED,
    attempted: bool = True,
):
    """The batch is over without a transactionId. Its leads go where the operator can act on them: `failed`
    with the reason, or `unconfirmed` when CloudAgent may have taken them after all. `attempted`: this ending
    followed a request of ours (counted on the batch)."""
    ambiguous = ambiguous or batch.ambiguous_attempts > 0  # an earlier attempt may have got through
    now = timezone.now()
    with transaction.atomic():
        ended = (
            _as_claimed(batch)
            .filter(state__in=[UploadTransaction.State.SENDING, UploadTransaction.State.PENDING])
            .update(
                state=UploadTransaction.State.ERROR,
                built_rows="",
                last_error=message[:2000],
                attempts=F("attempts") + int(attempted),
                finished_at=now,
                updated_at=now,
            )
        )
        if ended and lead_status is not None:
            status = Lead.Status.UNCONFIRMED if ambiguous else lead_status
            Lead.objects.filter(upload_transaction=batch, status=Lead.Status.QUEUED).update(
                status=status, status_reason=f"CloudAgent: {message}"[:500], updated_at=now
            )


def _flag_problem(queryset, message: str) -> None:
    queryset.update(problem=message, problem_at=timezone.now())


def _fail_waiting(batches, message: str) -> None:
    """Credentials or a campaign CloudAgent refuses would refuse every waiting batch too: end them now
    rather than spend a rate-limit slot on each."""
    for batch in batches.filter(state=UploadTransaction.State.PENDING):
        _finish_error(batch, f"not sent: {message}", attempted=False)


def upload_transactions_recover_stale(*, account_ids: Iterable[int]) -> int:
    """Batches left `sending` by a dispatcher that died. The caller holds these accounts' leases, so nothing is
    sending them now. One whose request had started (its grant was written, `last_attempt_at`) may be held by
    CloudAgent already and is re-sent with checkDuplicate=true; one only claimed and built goes back as it was.
    Two UPDATEs for any number of accounts: a dispatcher taking a hundred at once must not pay per account."""
    ids = list(account_ids)
    stale = UploadTransaction.objects.filter(campaign__account_id__in=ids, state=UploadTransaction.State.SENDING)
    now = timezone.now()
    # claimed_at=None: should the dead dispatcher wake, its outcome no longer matches its claim.
    unsent = stale.filter(last_attempt_at__isnull=True).update(
        state=UploadTransaction.State.PENDING, claimed_at=None, updated_at=now
    )
    maybe_sent = stale.update(
        state=UploadTransaction.State.PENDING,
        claimed_at=None,
        ambiguous_attempts=F("ambiguous_attempts") + 1,  # the re-send derives checkDuplicate=true from it
        last_error="the worker stopped while sending; re-sending with checkDuplicate=true",
        updated_at=now,
    )
    if unsent or maybe_sent:
        logger.warning(
            "accounts %s: recovered %s batch(es) a stopped worker was sending and %s it had not sent yet",
            ids,
            maybe_sent,
            unsent,
        )
    return unsent + maybe_sent


def upload_transactions_repush(*, batches, user=None) -> PushSummary:
    """Push again the leads an operator can act on from finished batches (failed, refused, or with leads left
    unconfirmed), and every lead of batches whose callback is overdue — with checkDuplicate=true, since
    CloudAgent may already hold some of them. Batches still waiting for a timely callback are left alone."""
    finished = batches.filter(state__in=UploadTransaction.FINISHED_STATES)
    overdue = upload_transactions_overdue().filter(pk__in=batches.values("pk"))
    lead_ids = list(
        Lead.objects.filter(
            Q(upload_transaction__in=finished, status__in=PUSHABLE_STATUSES)
            | Q(upload_transaction__in=overdue, status__in=(*PUSHABLE_STATUSES, Lead.Status.SENT))
        ).values_list("pk", flat=True)
    )
    Lead.objects.filter(pk__in=lead_ids, status=Lead.Status.SENT).update(
        status=Lead.Status.UNCONFIRMED, status_reason="no callback came for its batch", updated_at=timezone.now()
    )
    return leads_push_request(leads=Lead.objects.filter(pk__in=lead_ids), user=user, check_duplicate=True)


# --- Callbacks ------------------------------------------------------------------------------------------------


class FailedFileRetry(Exception):
    """Raised out of the job so RQ retries it (queues.FAILED_FILE_RETRY)."""


def failed_file_url_check(url: str) -> str:
    """Why a callback's failedFilePath cannot be fetched ("" when it can): the column's length, and the host and
    scheme rules of the client (CLOUDAGENT_FAILED_FILE_HOSTS), so a forged callback cannot make a worker fetch an
    address inside our network."""
    if len(url) > UploadTransaction._meta.get_field("failed_file_url").max_length:
        return "the URL is too long"
    return failed_file_url_problem(url, policy=failed_file_fetch_policy())


def failed_file_fetch_policy() -> FetchPolicy:
    """The rules of a failed-file download, from the settings: https only outside development, the named hosts,
    the private networks let through (tests, the demo), the size cap and the time limit."""
    return FetchPolicy(
        max_bytes=settings.CLOUDAGENT_FAILED_FILE_MAX_BYTES,
        timeout=settings.CLOUDAGENT_FAILED_FILE_TIMEOUT,
        allow_http=settings.LEADHUB_ALLOW_PLAIN_HTTP,
        allowed_hosts=tuple(settings.CLOUDAGENT_FAILED_FILE_HOSTS),
        allow_networks=parse_networks(settings.CLOUDAGENT_FETCH_ALLOW_NETWORKS),
        allowed_hosts_name="CLOUDAGENT_FAILED_FILE_HOSTS",
    )


def callback_event_apply(*, event: CallbackEvent) -> CallbackEvent:
    """Parse a stored callback and apply it to its transaction and leads; returns the event in its new state.

    Idempotent and safe to run concurrently (from the view, the push and the sweep): only a `received` or
    `waiting` event is applied, under a row lock. An event left waiting is looked at once more after its
    waiting state is committed: the push stores the transactionId, commits, then looks for waiting events
    (callback_events_apply_waiting), so one side or the other always sees both."""
    event = _event_apply_once(event.pk)
    if (
        event.state == CallbackEvent.State.WAITING
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
        state=CallbackEvent.State.WAITING, transaction_id=upload_transaction.transaction_id
    ).order_by("id")
    return [callback_event_apply(event=CallbackEvent(pk=pk)) for pk in pks.values_list("pk", flat=True)]


def _event_apply_once(event_pk: int) -> CallbackEvent:
    with transaction.atomic():
        event = CallbackEvent.objects.select_for_update().get(pk=event_pk)
        if event.state not in (CallbackEvent.State.RECEIVED, CallbackEvent.State.WAITING):
            return event
        try:
            data = callback_body_parse(
                body=event.body, content_type=event.content_type, time_zone=settings.CLOUDAGENT_TIME_ZONE
            )
        except CallbackInvalid as exc:
            logger.warning("callback event %s is invalid: %s", event.pk, exc)
            return _event_settle(event, CallbackEvent.State.INVALID, error=str(exc))
        upload_transaction = (
            UploadTransaction.objects.select_for_update(of=("self",))
            .select_related("campaign")
            .filter(transaction_id=data.transaction_id)
            .first()
        )
        if upload_transaction is None:
            return _event_settle(event, CallbackEvent.State.WAITING, transaction_id=data.transaction_id)
        if event.account_id is None or upload_transaction.campaign.account_id != event.account_id:
            return _event_settle(
                event,
                CallbackEvent.State.IGNORED,
                transaction_id=data.transaction_id,
                error="the transaction belongs to another account's campaign, or the event to no account",
            )
        if upload_transaction.state not in OPEN_TRANSACTION_STATES:
            return _event_settle(
                event,
                CallbackEvent.State.IGNORED,
                transaction_id=data.transaction_id,
                upload_transaction=upload_transaction,
                error=f"the transaction is already {upload_transaction.state}: a duplicate or late callback",
            )
        _upload_transaction_finish(upload_transaction, data)
        return _event_settle(
            event,
            CallbackEvent.State.APPLIED,
            transaction_id=data.transaction_id,
            upload_transaction=upload_transaction,
        )


def _event_settle(event: CallbackEvent, state: str, **fields) -> CallbackEvent:
    now = timezone.now()
    fields.setdefault("error", "")
    if state == CallbackEvent.State.APPLIED:
        fields["applied_at"] = now
    settled = CallbackEvent.objects.filter(
        pk=event.pk, state__in=(CallbackEvent.State.RECEIVED, CallbackEvent.State.WAITING)
    ).update(state=state, **fields)
    if not settled:  # the caller holds the event's row lock, so this would be a bug: read what is there
        event.refresh_from_db()
        return event
    event.state = state
    for name, value in fields.items():
        setattr(event, name, value)
    return event


def _upload_transaction_finish(upload_transaction: UploadTransaction, data: CallbackData) -> None:
    """Move the transaction to completed / failed and its leads to what the callback proves. With a usable
    failed file the leads stay `sent` until the job has read it: only the file says which rows failed."""
    now = timezone.now()
    url_problem = failed_file_url_check(data.failed_file_path) if data.failed_file_path else ""
    failed_file_url = data.failed_file_path if data.failed_file_path and not url_problem else ""
    attention = ""
    if data.status == FAIL:
        state, lead_status = UploadTransaction.State.FAILED, Lead.Status.FAILED
        reason = f"CloudAgent refused the batch: {data.message or 'no message'}"
    elif failed_file_url:
        state, lead_status, reason = UploadTransaction.State.COMPLETED, None, ""
    else:
        state = UploadTransaction.State.COMPLETED
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
    if state == UploadTransaction.State.COMPLETED and failed_file_url:
        pk = upload_transaction.pk
        transaction.on_commit(lambda: queues.failed_file_fetch_enqueue(upload_transaction_id=pk), robust=True)


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
    queue behind each other instead of deadlocking (docs/performance.md, Callback). None means every open lead."""
    open_leads = Lead.objects.filter(upload_transaction_id=upload_transaction_id, status__in=OPEN_LEAD_STATUSES)
    now = timezone.now()
    if len(outcomes) == 1 and None in outcomes.values():
        # Every open lead to one status (a whole batch's callback): one statement locks them in primary-key order
        # and writes them; a locking SELECT, then an UPDATE naming the 500 ids, took a third longer.
        ((status, reason),) = outcomes
        Lead.objects.filter(id__in=open_leads.order_by("id").select_for_update().values("id")).update(
            status=status, status_reason=reason[:500], updated_at=now
        )
        return
    locked = set(open_leads.order_by("id").select_for_update().values_list("id", flat=True))
    for (status, reason), ids in outcomes.items():
        chosen = locked if ids is None else locked.intersection(ids)
        if chosen:
            open_leads.filter(id__in=sorted(chosen)).update(status=status, status_reason=reason[:500], updated_at=now)


def failed_file_fetch(*, upload_transaction: UploadTransaction) -> str:
    """Download the failed file of a completed transaction, keep a copy, and settle its leads: the rows named in
    the file `failed` with their reason, the others `uploaded`. If the file cannot be had or read, the leads
    become `unconfirmed` and the transaction says why (`attention`).

    Raises FailedFileRetry on a transient problem while the URL is still valid (24 h from the callback) so the
    job is retried; after that the leads are settled as unconfirmed. Returns a one-line summary for the job."""
    upload_transaction = UploadTransaction.objects.select_related("campaign__account").get(pk=upload_transaction.pk)
    if upload_transaction.state != UploadTransaction.State.COMPLETED or not upload_transaction.failed_file_url:
        return "no failed file to fetch"
    if not upload_transaction.leads.filter(status__in=OPEN_LEAD_STATUSES).exists():
        return "every lead is already settled"
    try:
        if upload_transaction.failed_file:
            with upload_transaction.failed_file.open("rb") as stored:
                content = stored.read()
        else:
            with CloudAgentClient.for_account(upload_transaction.campaign.account) as client:
                content = client.failed_file_download(
                    upload_transaction.failed_file_url, policy=failed_file_fetch_policy()
                )
            _failed_file_store(upload_transaction, content)
        rows = failed_file_read(content, limits=SheetLimits.from_settings(settings))
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


def _failed_file_store(upload_transaction: UploadTransaction, content: bytes) -> None:
    """Keep a copy before reading it: the URL dies after 24 h and the operator may want to see the file."""
    extension = "xlsx" if content[:4] == b"PK\x03\x04" else "xls" if content[:4] == b"\xd0\xcf\x11\xe0" else "csv"
    name = f"{upload_transaction.transaction_id or upload_transaction.pk}-failed.{extension}"
    upload_transaction.failed_file.save(name, ContentFile(content), save=False)
    UploadTransaction.objects.filter(pk=upload_transaction.pk).update(
        failed_file=upload_transaction.failed_file.name, updated_at=timezone.now()
    )


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
                held_reason = f"{ALREADY_HELD_REASON} (its failed file said: {reasons[phone]})"
                outcomes[(Lead.Status.UPLOADED, held_reason)].append(lead_id)
            elif phone in reasons:
                outcomes[(Lead.Status.FAILED, reasons[phone])].append(lead_id)
            else:
                outcomes[unnamed].append(lead_id)
        _leads_settle(upload_transaction.pk, outcomes)
        failed = sum(len(ids) for (status, _), ids in outcomes.items() if status == Lead.Status.FAILED)
        held = sum(
            len(ids)
            for (status, reason), ids in outcomes.items()
            if status == Lead.Status.UPLOADED and reason.startswith(ALREADY_HELD_REASON)
        )
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


# --- Dispatch leases: which dispatch process serves which account -----------------------------------------
#
# Kept in the database rather than Redis because Redis can come back empty (a failover to a replica without the
# last writes): ownership must survive that, or a second process would take over accounts whose batches are in
# flight and send them again. A lease is renewed for all of a process's accounts in one UPDATE and lapses when
# the process dies; times come from the application clock, which the lease length (30 s) dwarfs any NTP skew of.

# A node row not heard from for this long is gone for good; younger ones stay to say when dispatch last ran.
DISPATCH_NODE_FORGET_AFTER = timedelta(hours=1)


def dispatch_node_heartbeat(*, name: str, accounts: int, problem: str = "") -> None:
    """Say this process is alive; recreates its row if it was lost (a restored database)."""
    now = timezone.now()
    updated = DispatchNode.objects.filter(name=name).update(heartbeat_at=now, accounts=accounts, problem=problem[:500])
    if not updated:
        host, pid, _ = name.rsplit(":", 2)
        DispatchNode.objects.get_or_create(
            name=name, defaults={"host": host, "pid": int(pid), "heartbeat_at": now, "problem": problem[:500]}
        )


def dispatch_node_stop(*, name: str) -> None:
    DispatchLease.objects.filter(holder=name).update(holder="", expires_at=timezone.now())
    DispatchNode.objects.filter(name=name).delete()


def dispatch_nodes_forget_dead() -> int:
    return DispatchNode.objects.filter(heartbeat_at__lt=timezone.now() - DISPATCH_NODE_FORGET_AFTER).delete()[0]


def dispatch_leases_take(*, holder: str, account_ids: Iterable[int], limit: int) -> list[int]:
    """Take up to `limit` of these accounts that nobody holds or whose holder's lease lapsed; returns those
    taken. A fixed number of statements for any number of accounts, so a push to a hundred accounts is not
    a hundred round trips on the loop thread before the last one's first send: missing lease rows are created
    unheld, then one conditional UPDATE takes them. The UPDATE re-checks each row's holder as it writes it,
    so two processes never both win an account."""
    ids = sorted(set(account_ids))
    if not ids or limit <= 0:
        return []
    now = timezone.now()
    expires = now + timedelta(seconds=settings.LEADHUB_DISPATCH_LEASE_SECONDS)
    DispatchLease.objects.bulk_create(
        [DispatchLease(account_id=account_id, holder="", expires_at=now) for account_id in ids],
        ignore_conflicts=True,
    )
    free = DispatchLease.objects.filter(account_id__in=ids).filter(Q(holder="") | Q(expires_at__lt=now))
    chosen = list(free.order_by("account_id").values_list("account_id", flat=True)[:limit])
    if not chosen:
        return []
    free.filter(account_id__in=chosen).update(holder=holder, expires_at=expires)
    return list(
        DispatchLease.objects.filter(account_id__in=chosen, holder=holder, expires_at=expires)
        .order_by("account_id")
        .values_list("account_id", flat=True)
    )


def dispatch_leases_renew(*, holder: str, account_ids) -> set[int]:
    """Renew every lease this process holds in one UPDATE; returns the accounts still ours (one taken over
    after a lapse is not)."""
    ids = list(account_ids)
    if not ids:
        return set()
    expires = timezone.now() + timedelta(seconds=settings.LEADHUB_DISPATCH_LEASE_SECONDS)
    leases = DispatchLease.objects.filter(holder=holder, account_id__in=ids)
    leases.update(expires_at=expires)
    return set(leases.values_list("account_id", flat=True))


def dispatch_lease_release(*, holder: str, account_id: int) -> None:
    DispatchLease.objects.filter(holder=holder, account_id=account_id).update(holder="", expires_at=timezone.now())
