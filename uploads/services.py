"""Push services: every write to upload transactions, and to the push states of their leads, goes through here.

The life of a batch (contract.md has the provider's side):
  leads_push           new leads -> batches of <= CLOUDAGENT_BATCH_SIZE: transaction `pending`, leads `queued`
  ..._claim_next       the account's dispatcher takes the fairest ready batch: `pending` -> `sending`
  ..._prepare          its rows are built ahead of its slot (a batch left empty ends `error`)
  ..._send             in the account's slot, one HTTP request, with no database transaction open across it,
                       then one outcome:
                       accepted -> `queued` + leads `sent`; rate-limited / transient -> back to `pending`;
                       refused -> `error` + leads `failed`.
  ..._recover_stale    a batch left `sending` by a killed worker goes back to `pending`, re-sent with
                       checkDuplicate=true because CloudAgent may already hold it.
Every state change checks the current state in the same UPDATE, so two workers can never both win.
"""

import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import django_rq
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, connection, transaction
from django.db.models import Count, F, Q
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign, CloudAgentAccount, Lead
from campaigns.normalize import clean_name, format_phone
from uploads import cloudagent
from uploads.callbacks import callback_events_apply_waiting, upload_transactions_overdue
from uploads.dispatch.wake import dispatch_wake
from uploads.models import UploadTransaction
from uploads.ratelimit import SlotPacer, SlotTimeout, account_pacer

logger = logging.getLogger("leadhub.push")

State = UploadTransaction.State
Status = Lead.Status

# Leads an operator may push: new ones, and ones CloudAgent or our checks refused, once fixed.
PUSHABLE_STATUSES = (Status.NEW, Status.FAILED, Status.INVALID, Status.UNCONFIRMED)
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


def leads_push_request(
    *, leads, user=None, statuses: Iterable[str] = PUSHABLE_STATUSES, check_duplicate: bool = False
) -> PushSummary:
    """The admin's and the CLI's entry point: answers at once. A selection of up to LEADHUB_PUSH_INLINE_LEADS
    pushable leads is batched now; a bigger one (batching a million leads takes about a minute) by a job on the
    `default` queue, and the answer gives the counts and ETA it will have."""
    statuses = list(statuses)
    pushable = leads.filter(status__in=statuses)
    count = pushable.count()
    if count <= settings.LEADHUB_PUSH_INLINE_LEADS:
        return leads_push(leads=leads, user=user, statuses=statuses, check_duplicate=check_duplicate)
    summary = PushSummary(leads=count, background=True, not_pushable=_not_pushable(leads, statuses))
    summary.batches = -(-count // settings.CLOUDAGENT_BATCH_SIZE)
    account_ids = Campaign.objects.filter(pk__in=pushable.order_by().values("campaign_id").distinct()).values_list(
        "account_id", flat=True
    )
    summary.eta_seconds = _latest_eta(set(account_ids), more_batches=summary.batches)
    from uploads.jobs import leads_push_job

    user_id = user.pk if user is not None else None
    transaction.on_commit(
        lambda: django_rq.get_queue("default").enqueue(
            leads_push_job, pushable.query, user_id, statuses, check_duplicate, job_timeout=3 * 3600
        )
    )
    return summary


def _not_pushable(leads, statuses) -> dict[str, int]:
    rows = leads.exclude(status__in=statuses).order_by().values("status").annotate(n=Count("id"))
    return {row["status"]: row["n"] for row in rows}


def leads_push(*, leads, user=None, statuses: Iterable[str] = PUSHABLE_STATUSES, check_duplicate: bool = False):
    """Put the given leads into batches for their campaigns' dispatchers; answers at once with counts and ETA.

    Leads our own checks refuse become `invalid` with the reason and take no slot in a batch. Leads in other
    states are counted in `not_pushable`, never silently skipped. `check_duplicate` forces checkDuplicate=true
    (re-pushes of leads CloudAgent may already hold).
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
            summary=summary,
        )
        accounts.add(campaign.account_id)
    # No job is enqueued: dispatch processes find the batches in the database, so a push survives a Redis loss
    # (uploads/dispatch/); the nudge only saves them waiting for their next poll.
    summary.eta_seconds = _latest_eta(accounts)
    if summary.batches:
        transaction.on_commit(dispatch_wake)
    return summary


def campaign_push_new(*, campaign: Campaign, user=None) -> PushSummary:
    return leads_push_request(leads=Lead.objects.filter(campaign=campaign), user=user, statuses=[Status.NEW])


def _campaign_batches(*, campaign, leads, statuses, user, check_duplicate, summary) -> None:
    """Check every lead as the client would, then cut the good ones into batches, a chunk at a time so a
    million-lead push never holds more than CHUNK leads in memory."""
    batch_size = settings.CLOUDAGENT_BATCH_SIZE
    options = _request_options(campaign, check_duplicate=check_duplicate)
    last_id = 0
    carry: list[int] = []
    while True:
        chunk = list(leads.filter(pk__gt=last_id).order_by("pk").values_list(*LEAD_ROW_FIELDS, named=True)[:CHUNK])
        if not chunk:
            break
        last_id = chunk[-1].pk
        built = cloudagent.build_rows(campaign.column_map, ((lead.pk, lead_values(lead, campaign)) for lead in chunk))
        summary.invalid += _leads_mark_invalid(built.rejected, statuses=statuses)
        carry.extend(built.keys)
        while len(carry) >= batch_size:
            _batch_create(campaign, carry[:batch_size], statuses, options, user, summary)
            carry = carry[batch_size:]
    if carry:
        _batch_create(campaign, carry, statuses, options, user, summary)


def _request_options(campaign: Campaign, *, check_duplicate: bool = False) -> dict:
    """`resend` marks a batch of leads CloudAgent may already hold: for it, "Number Already Exist" in the
    failed file means the lead is in the dialer (uploads/callbacks.py)."""
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
            lead.status, lead.status_reason, lead.updated_at = Status.INVALID, reasons[lead.pk], now
            if unlink:
                lead.upload_transaction = None
        fields = ["status", "status_reason", "updated_at", *(["upload_transaction"] if unlink else [])]
        Lead.objects.bulk_update(leads, fields, batch_size=500)
    return len(leads)


@transaction.atomic
def _batch_create(campaign, lead_ids, statuses, options, user, summary) -> None:
    """One transaction per batch: the leads that are still pushable move to `queued` in the same UPDATE that
    ties them to the batch, so a lead is never in two live batches."""
    batch = UploadTransaction.objects.create(
        campaign=campaign, options=options, pushed_by=user, row_count=len(lead_ids)
    )
    taken = Lead.objects.filter(pk__in=lead_ids, status__in=statuses).update(
        status=Status.QUEUED, status_reason="", upload_transaction=batch, updated_at=timezone.now()
    )
    if not taken:
        batch.delete()
        return
    if taken != len(lead_ids):  # some changed state since they were read: the batch holds the rest
        UploadTransaction.objects.filter(pk=batch.pk).update(row_count=taken)
    summary.leads += taken
    summary.batches += 1


def push_eta_seconds(*, account_id: int, more_batches: int = 0) -> float:
    """When the account's last waiting batch (and `more_batches` still to be cut) should go, at the pace the rate
    limit allows."""
    waiting = (
        more_batches
        + UploadTransaction.objects.filter(
            campaign__account_id=account_id, state__in=[State.PENDING, State.SENDING]
        ).count()
    )
    if not waiting:
        return 0.0
    status = account_pacer(account_id).status()
    return status.next_slot_in + (waiting - 1) * status.interval


def _latest_eta(account_ids, *, more_batches: int = 0) -> float:
    """A push over several accounts is done when the slowest account is."""
    return max((push_eta_seconds(account_id=a, more_batches=more_batches) for a in account_ids), default=0.0)


# --- the dispatcher's steps ---------------------------------------------------------------------------


def upload_transaction_claim_next(*, account_id: int, last_served: dict[int, float]) -> UploadTransaction | None:
    """Take the next batch to send: campaigns sharing the account take turns (the one served longest ago goes
    first), so one big push cannot starve another campaign; within a campaign, oldest batch first."""
    now = timezone.now()
    ready = _sendable(account_id).filter(Q(not_before__isnull=True) | Q(not_before__lte=now))
    campaign_ids = list(ready.order_by().values_list("campaign_id", flat=True).distinct())
    for campaign_id in sorted(campaign_ids, key=lambda cid: (last_served.get(cid, float("-inf")), cid)):
        for batch_id in ready.filter(campaign_id=campaign_id).order_by("pk").values_list("pk", flat=True)[:5]:
            claimed = UploadTransaction.objects.filter(pk=batch_id, state=State.PENDING).update(
                # No request for this claim yet: recovery tells a batch never sent from one maybe sent by it.
                state=State.SENDING,
                claimed_at=now,
                last_attempt_at=None,
                updated_at=now,
            )
            if claimed:
                return UploadTransaction.objects.select_related("campaign__account").get(pk=batch_id)
    return None


def next_retry_in(*, account_id: int) -> float | None:
    """Seconds until the earliest backed-off batch may go (0 if one is ready), None when nothing waits."""
    first = list(
        _sendable(account_id).order_by(F("not_before").asc(nulls_first=True)).values_list("not_before", flat=True)[:1]
    )
    if not first:
        return None
    return 0.0 if first[0] is None else max(0.0, (first[0] - timezone.now()).total_seconds())


def _sendable(account_id: int):
    """Pending batches the dispatcher may send: an inactive account or campaign keeps its batches waiting."""
    return UploadTransaction.objects.filter(
        campaign__account_id=account_id,
        campaign__account__is_active=True,
        campaign__is_active=True,
        state=State.PENDING,
    )


@dataclass
class PreparedBatch:
    """A claimed batch with its rows built and its request fields fixed: what is left is the slot and the call."""

    batch: UploadTransaction
    rows: list
    options: dict
    callback_url: str


def upload_transaction_prepare(*, batch: UploadTransaction) -> PreparedBatch | None:
    """Build the claimed batch's rows ahead of its slot (the database work a send needs, done before the slot so
    it does not eat into the pace). Leads our checks now refuse leave the batch; a batch left empty ends here
    and None comes back."""
    campaign = batch.campaign
    leads = Lead.objects.filter(upload_transaction=batch, status=Status.QUEUED).order_by("pk")
    rows = leads.values_list(*LEAD_ROW_FIELDS, named=True)
    built = cloudagent.build_rows(campaign.column_map, ((lead.pk, lead_values(lead, campaign)) for lead in rows))
    _leads_mark_invalid(built.rejected, statuses=[Status.QUEUED], unlink=True)
    if not built.rows:
        _finish_error(
            batch, "nothing left to send: every lead was refused by our own checks", lead_status=None, attempted=False
        )
        return None
    # An attempt whose outcome was unknown may have reached CloudAgent: every re-send skips its duplicates.
    options = {**batch.options, "checkDuplicate": bool(batch.options.get("checkDuplicate") or batch.ambiguous_attempts)}
    callback_url = callback_url_for(campaign.account)
    sent_options = {**options, "callBackUrl": callback_url, "rows": len(built.rows)}
    UploadTransaction.objects.filter(pk=batch.pk).update(options=sent_options, row_count=len(built.rows))
    return PreparedBatch(batch=batch, rows=built.rows, options=options, callback_url=callback_url)


def upload_transaction_give_back(*, batch: UploadTransaction) -> bool:
    """A claimed batch its dispatcher will not finish (it lost the account, is stopping, or could not learn or
    record the outcome): back to `pending` as it was if no request left for it, else as ambiguous, re-sent with
    checkDuplicate=true. `last_attempt_at` tells the two apart: the claim clears it, the grant writes it."""
    claimed = _as_claimed(batch).filter(state=State.SENDING)
    now = timezone.now()
    if claimed.filter(last_attempt_at__isnull=True).update(state=State.PENDING, claimed_at=None, updated_at=now):
        return True
    return bool(
        claimed.update(
            state=State.PENDING,
            claimed_at=None,
            ambiguous_attempts=F("ambiguous_attempts") + 1,
            last_error="its outcome is unknown; re-sending with checkDuplicate=true",
            updated_at=now,
        )
    )


def account_recent_attempts(*, account_id: int, seconds: float) -> list[float]:
    """Unix times (the pacer's clock) of the account's requests within the last `seconds`, newest per batch:
    what seeds the pacer when Redis has forgotten it."""
    since = timezone.now() - timedelta(seconds=seconds)
    moments = UploadTransaction.objects.filter(campaign__account_id=account_id, last_attempt_at__gt=since)
    return sorted(moment.timestamp() for moment in moments.values_list("last_attempt_at", flat=True))


def upload_transaction_send(*, prepared: PreparedBatch, client: cloudagent.CloudAgentClient, pacer: SlotPacer) -> str:
    """Send one prepared batch in the account's next slot and record what became of it; returns the outcome.

    Raises SlotTimeout (with the seconds to wait) when the slot has not come yet: the batch stays claimed.
    No database transaction is open across the HTTP call. The slot is taken right before the request, so what
    we count is what CloudAgent sees, and its time is written first: the pacer can be seeded with it."""
    batch, options = prepared.batch, prepared.options
    campaign = batch.campaign
    account_id = campaign.account_id
    wait, granted_at = pacer.take(
        history=lambda: account_recent_attempts(account_id=account_id, seconds=pacer.window_seconds * 2)
    )
    if wait > 0:
        raise SlotTimeout(f"pacer {pacer.key}: next slot in {wait:.3f} s", wait=wait)
    UploadTransaction.objects.filter(pk=batch.pk).update(last_attempt_at=datetime.fromtimestamp(granted_at, tz=UTC))
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
    except cloudagent.CloudAgentError as exc:
        error = exc
    else:
        return _outcome_write(lambda: _record_accepted(batch, result))
    if isinstance(error, cloudagent.RateLimitedError):
        # CloudAgent counts differently from us: skip the next slot, and a whole window if it keeps saying so.
        pacer.push_back(min(pacer.window_seconds, pacer.interval * 2 ** (batch.rate_limited + 1)))
    return _outcome_write(lambda: _record_refusal(batch, error))


def _record_refusal(batch: UploadTransaction, exc: cloudagent.CloudAgentError) -> str:
    if isinstance(exc, cloudagent.RateLimitedError):
        return _retry(batch, exc, rate_limited=True)
    if isinstance(exc, cloudagent.TransientError):
        return _retry(batch, exc)
    campaign = batch.campaign
    if isinstance(exc, cloudagent.AuthenticationError):
        _flag_problem(CloudAgentAccount.objects.filter(pk=campaign.account_id), exc.message)
        _fail_waiting(UploadTransaction.objects.filter(campaign__account_id=campaign.account_id), exc.message)
        _finish_error(batch, exc.message)
        return "account_refused"
    if isinstance(exc, cloudagent.CampaignError):
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


def _record_accepted(batch: UploadTransaction, result: cloudagent.AddBulkDataResult) -> str:
    now = timezone.now()
    with transaction.atomic():
        # A batch recovered to `pending` meanwhile (its lease lapsed) was still accepted: record it.
        recorded = UploadTransaction.objects.filter(pk=batch.pk, state__in=[State.SENDING, State.PENDING]).update(
            state=State.QUEUED,
            transaction_id=result.transaction_id,
            response=result.raw,
            attempts=F("attempts") + 1,
            last_error="",
            sent_at=now,
            updated_at=now,
        )
        if recorded:
            Lead.objects.filter(upload_transaction=batch, status=Status.QUEUED).update(
                status=Status.SENT, status_reason="", updated_at=now
            )
            CloudAgentAccount.objects.filter(pk=batch.campaign.account_id).exclude(problem="").update(problem="")
            Campaign.objects.filter(pk=batch.campaign_id).exclude(problem="").update(problem="")
    if recorded:
        batch.transaction_id = result.transaction_id
        # CloudAgent can call back before its synchronous answer reaches us (contract.md, callback).
        callback_events_apply_waiting(upload_transaction=batch)
    return "queued"


def _retry(batch: UploadTransaction, exc: cloudagent.CloudAgentError, *, rate_limited: bool = False) -> str:
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
        "state": State.PENDING,
        "attempts": F("attempts") + 1,
        "last_error": exc.message[:2000],
        "not_before": now + timedelta(seconds=delay) if delay else None,
        "updated_at": now,
    }
    if rate_limited:
        changes["rate_limited"] = F("rate_limited") + 1
    if exc.ambiguous:  # the re-send derives checkDuplicate=true from this count
        changes["ambiguous_attempts"] = F("ambiguous_attempts") + 1
    _as_claimed(batch).filter(state=State.SENDING).update(**changes)
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
    lead_status=Status.FAILED,
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
            .filter(state__in=[State.SENDING, State.PENDING])
            .update(
                state=State.ERROR,
                last_error=message[:2000],
                attempts=F("attempts") + int(attempted),
                finished_at=now,
                updated_at=now,
            )
        )
        if ended and lead_status is not None:
            status = Status.UNCONFIRMED if ambiguous else lead_status
            Lead.objects.filter(upload_transaction=batch, status=Status.QUEUED).update(
                status=status, status_reason=f"CloudAgent: {message}"[:500], updated_at=now
            )


def _flag_problem(queryset, message: str) -> None:
    queryset.update(problem=message, problem_at=timezone.now())


def _fail_waiting(batches, message: str) -> None:
    """Credentials or a campaign CloudAgent refuses would refuse every waiting batch too: end them now
    rather than spend a rate-limit slot on each."""
    for batch in batches.filter(state=State.PENDING):
        _finish_error(batch, f"not sent: {message}", attempted=False)


def upload_transactions_recover_stale(*, account_id: int) -> int:
    """Batches left `sending` by a dispatcher that died. The caller holds the account's lease, so nothing is
    sending them now. One whose request had started (its grant was written, `last_attempt_at`) may be held by
    CloudAgent already and is re-sent with checkDuplicate=true; one only claimed and built goes back as it was."""
    stale = UploadTransaction.objects.filter(campaign__account_id=account_id, state=State.SENDING)
    now = timezone.now()
    # claimed_at=None: should the dead dispatcher wake, its outcome no longer matches its claim.
    unsent = stale.filter(last_attempt_at__isnull=True).update(state=State.PENDING, claimed_at=None, updated_at=now)
    maybe_sent = stale.update(
        state=State.PENDING,
        claimed_at=None,
        ambiguous_attempts=F("ambiguous_attempts") + 1,  # the re-send derives checkDuplicate=true from it
        last_error="the worker stopped while sending; re-sending with checkDuplicate=true",
        updated_at=now,
    )
    if unsent or maybe_sent:
        logger.warning(
            "account %s: recovered %s batch(es) a stopped worker was sending and %s it had not sent yet",
            account_id,
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
            | Q(upload_transaction__in=overdue, status__in=(*PUSHABLE_STATUSES, Status.SENT))
        ).values_list("pk", flat=True)
    )
    Lead.objects.filter(pk__in=lead_ids, status=Status.SENT).update(
        status=Status.UNCONFIRMED, status_reason="no callback came for its batch", updated_at=timezone.now()
    )
    return leads_push_request(leads=Lead.objects.filter(pk__in=lead_ids), user=user, check_duplicate=True)
