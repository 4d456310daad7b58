"""Call summaries in, calls and the leads' dialling fields out. The only module that writes `Call`,
`CallSummaryPost` and the lead fields call_attempts / last_dial_status / last_customer_status / last_disposition
/ last_call_at.

A post is stored first, its Apikey already removed (CloudAgent sends the account's key in plain text), then
applied: matched to its campaign and lead, merged into the call with its monitorUCID (the idempotency key), and
the lead's last call moved forward with a conditional UPDATE, so a late or repeated summary never overwrites a
newer call (docs/cloudagent-call-summary.md).
"""

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from calls.models import Call, CallSummaryPost
from calls.selectors import leads_due_redial, outcomes_canonical
from campaigns.models import Campaign, CloudAgentAccount, Lead
from campaigns.normalize import PhoneError, normalize_phone
from cloudagent.call_summary import (
    REDACTED,
    CallSummary,
    MalformedCallSummary,
    call_summary_body_redact,
    call_summary_parse,
)
from leadhub.fields import SecretDecryptionError, secret_decrypt
from uploads.services import PushSummary, leads_push_redial

logger = logging.getLogger(__name__)

PostState = CallSummaryPost.State
Match = Call.Match
# The call's own fields a later summary may fill in; an empty value in it never erases a known one.
MERGED_FIELDS = (
    "campaign_name",
    "caller_id",
    "dialed_number",
    "uui",
    "call_type",
    "started_at",
    "ended_at",
    "time_to_answer_seconds",
    "duration_seconds",
    "dial_status",
    "customer_status",
    "agent_status",
    "agent_id",
    "agent_name",
    "disposition",
    "comments",
    "audio_file",
    "hangup_by",
    "transfer_type",
    "skill",
    "did",
)


def call_summary_post_take(
    *, account: CloudAgentAccount, body: bytes, content_type: str, remote_addr: str | None
) -> CallSummaryPost:
    """The webhook's work in one transaction, one commit (round trips are what a post costs under load): the post
    is stored first, then applied. Should applying break on our side, the transaction is rolled back and the post
    stored again on its own, `received`, for the sweep. A crash before the commit keeps nothing, but CloudAgent then
    had no answer and posts again ("call back hit tries", docs/cloudagent-call-summary.md)."""
    stored = {"account": account, "body": body, "content_type": content_type, "remote_addr": remote_addr}
    try:
        with transaction.atomic():
            post = call_summary_post_receive(**stored)
            return _post_apply(post)
    except Exception:
        logger.exception("a call summary post broke on our side; it is stored for the sweep to apply")
        return call_summary_post_receive(**stored)


def call_summary_post_receive(
    *, account: CloudAgentAccount, body: bytes, content_type: str, remote_addr: str | None
) -> CallSummaryPost:
    """Store the post as it came, minus the API key, before anything else reads it. The key is removed twice:
    wherever the body's shape puts it (docs/cloudagent-call-summary.md, The API key in every post), then the
    account's own key wherever it still appears. NUL bytes, which no text column holds, are escaped; the parser
    drops them anyway."""
    text = _without_account_key(call_summary_body_redact(body, content_type).decode("utf-8"), account=account)
    return CallSummaryPost.objects.create(
        account=account,
        body=text.replace("\x00", "\\x00"),
        content_type=content_type.replace("\x00", "")[:200],
        remote_addr=remote_addr,
    )


def _without_account_key(text: str, *, account: CloudAgentAccount) -> str:
    """Behind the redaction by shape, the account's own key wherever it still appears: decrypted from the token the
    webhook read with the account (account_for_secret), else the loaded account's. A key the key ring cannot
    decrypt must not cost the call (nor answer a 500): the redaction has removed the Apikey field already."""
    token = getattr(account, "api_key_token", None)
    try:
        if token is None:  # an account loaded whole: its key was decrypted with it
            api_key = account.api_key
        else:
            api_key = secret_decrypt(token) if token else ""
    except SecretDecryptionError:
        logger.warning(
            "account %s: its API key cannot be decrypted; the post is stored redacted by shape only", account.pk
        )
        return text
    if len(api_key) < 6:  # too short to tell from other text; the structural redaction has removed it anyway
        return text
    for form in {api_key, api_key.replace(" ", "+")}:
        text = text.replace(form, REDACTED)
    return text


def call_summary_post_apply(*, post: CallSummaryPost) -> CallSummaryPost:
    """Apply a stored post; idempotent (a post applied twice, or the same summary posted twice, changes nothing
    the second time). Raises only on our own failures: the post then stays `received` for the sweep."""
    if post.state != PostState.RECEIVED:
        return post
    with transaction.atomic():
        return _post_apply(post)


def _post_apply(post: CallSummaryPost) -> CallSummaryPost:
    try:
        stored = post.body.encode("utf-8")
        # No cap here: the webhook capped the post, and redaction may have lengthened it a little.
        summary = call_summary_parse(stored, post.content_type, max_bytes=len(stored))
    except MalformedCallSummary as exc:
        logger.warning("call summary post %s is invalid: %s", post.pk, exc)
        return _post_settle(post, PostState.INVALID, error=str(exc)[:1000])
    campaign = None
    if summary.campaign_name:
        campaign = (
            Campaign.objects.filter(account_id=post.account_id, name=summary.campaign_name)
            .only("pk", "phone_region")
            .order_by("pk")
            .first()
        )
    phone = _phone(summary, campaign)
    merged = _call_merge(post.account_id, summary, campaign, phone)
    call = merged.call
    if merged.changed and call.lead_id:
        _lead_record_call(call, first_for_lead=merged.first_for_lead, previous_moment=merged.previous_moment)
    return _post_settle(post, PostState.APPLIED if merged.changed else PostState.DUPLICATE, call=call)


def _post_settle(post: CallSummaryPost, state: str, **fields) -> CallSummaryPost:
    now = timezone.now()
    fields.setdefault("error", "")
    CallSummaryPost.objects.filter(pk=post.pk, state=PostState.RECEIVED).update(state=state, applied_at=now, **fields)
    post.state, post.applied_at = state, now
    for name, value in fields.items():
        setattr(post, name, value)
    return post


def _phone(summary: CallSummary, campaign: Campaign | None) -> str:
    """The customer's number in E.164 by the campaign's own rules, as its leads are stored; "" when unknown."""
    region = campaign.phone_region if campaign is not None else "IN"
    for raw in (summary.caller_id, summary.dialed_number):
        if raw:
            try:
                return normalize_phone(raw, region)
            except PhoneError:
                continue
    return ""


def _lead_match(summary: CallSummary, campaign: Campaign | None, phone: str) -> tuple[int | None, str]:
    """By the campaign and the number first; by UUI (the lead's Name as we pushed it) when the number is missing
    or matches no lead. A UUI shared by several leads matches none: a guess would put a call on the wrong lead."""
    if campaign is None:
        return None, Match.NONE
    if phone:
        found = Lead.objects.filter(campaign=campaign, phone_number=phone).values_list("pk", flat=True).first()
        if found is not None:
            return found, Match.PHONE
    if summary.uui:
        found = list(Lead.objects.filter(campaign=campaign, name=summary.uui).values_list("pk", flat=True)[:2])
        if len(found) == 1:
            return found[0], Match.UUI
    return None, Match.NONE


def _call_values(summary: CallSummary) -> dict:
    zone = ZoneInfo(settings.CLOUDAGENT_TIME_ZONE)

    def aware(moment):
        if moment is not None and timezone.is_naive(moment):
            return moment.replace(tzinfo=zone)  # CloudAgent writes its local time without a zone
        return moment

    values = {name: getattr(summary, name) for name in MERGED_FIELDS if hasattr(summary, name)}
    values["started_at"] = aware(summary.start_time)
    values["ended_at"] = aware(summary.end_time)
    values["audio_file"] = summary.audio_file if summary.audio_file.startswith(("http://", "https://")) else ""
    for name, value in values.items():
        if isinstance(value, str):
            limit = getattr(Call._meta.get_field(name), "max_length", None)
            values[name] = value[:limit] if limit else value
    return values


@dataclass(frozen=True)
class _Merged:
    call: Call
    changed: bool
    first_for_lead: bool  # the lead counts an attempt once per call
    previous_moment: datetime | None = None  # when the call was thought to happen before this summary


def _call_merge(account_id: int, summary: CallSummary, campaign, phone: str) -> _Merged:
    """Insert the call, or merge the summary into the one with its monitorUCID (locked, so two posts for one call
    apply one after the other; of two first posts at the same instant, the second merges into the first's row)."""
    values = _call_values(summary)
    key = {"account_id": account_id, "monitor_ucid": summary.monitor_ucid}
    call = Call.objects.select_for_update().filter(**key).first()
    if call is None:
        lead_id, match = _lead_match(summary, campaign, phone)
        call = Call(**key, **values, campaign=campaign, lead_id=lead_id, match=match, phone_number=phone)
        call.summary = summary.data
        if _call_insert_if_new(call):
            return _Merged(call, changed=True, first_for_lead=lead_id is not None)
        call = Call.objects.select_for_update().get(**key)  # the same call's other post inserted it first
    changes = {
        name: value for name, value in values.items() if value not in ("", None) and getattr(call, name) != value
    }
    summary_fields = {**call.summary, **{k: v for k, v in summary.data.items() if v not in ("", None)}}
    if summary_fields != call.summary:
        changes["summary"] = summary_fields
    first_for_lead = False
    if call.lead_id is None:
        lead_id, match = _lead_match(summary, campaign or call.campaign, phone or call.phone_number)
        if lead_id is not None:
            changes.update(lead_id=lead_id, match=match, campaign=campaign or call.campaign)
            first_for_lead = True
    if not changes:
        return _Merged(call, changed=False, first_for_lead=False)
    previous_moment = call.moment
    for name, value in changes.items():
        setattr(call, name, value)
    call.posts += 1
    call.updated_at = timezone.now()
    call.save(update_fields=[*changes, "posts", "updated_at"])
    return _Merged(call, changed=True, first_for_lead=first_for_lead, previous_moment=previous_moment)


def _call_insert_if_new(call: Call) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING: one statement, where a savepoint around a plain INSERT (in
    case the call's other post got there first) costs two more round trips."""
    fields = [field for field in Call._meta.concrete_fields if not field.primary_key]
    quote = connection.ops.quote_name
    conflict = ", ".join(quote(Call._meta.get_field(name).column) for name in ("account", "monitor_ucid"))
    values = [field.get_db_prep_save(field.pre_save(call, add=True), connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(Call._meta.db_table)} ({', '.join(quote(field.column) for field in fields)}) "
            f"VALUES ({', '.join(['%s'] * len(fields))}) ON CONFLICT ({conflict}) DO NOTHING "
            f"RETURNING {quote(Call._meta.pk.column)}",
            values,
        )
        row = cursor.fetchone()
    if row is None:
        return False
    call.pk, call._state.adding = row[0], False
    return True


def _lead_record_call(call: Call, *, first_for_lead: bool, previous_moment: datetime | None) -> None:
    """Move the lead's last call forward, in one conditional UPDATE: only a call at least as recent as the lead's
    last one (or that very call, now with its disposition) replaces it, so summaries arriving late or out of
    order never overwrite a newer call. An attempt is counted once per call."""
    moment = call.moment
    latest = Q(last_call_at__isnull=True) | Q(last_call_at__lte=moment)
    if previous_moment is not None:
        latest |= Q(last_call_at=previous_moment)  # this very call, the lead's last, before its start was known
    last = {
        "last_dial_status": call.dial_status,
        "last_customer_status": call.customer_status,
        "last_disposition": call.disposition,
        "last_call_at": moment,
    }
    leads = Lead.objects.filter(pk=call.lead_id)
    if not first_for_lead:
        leads.filter(latest).update(**last)
        return
    leads.update(
        call_attempts=F("call_attempts") + 1,
        **{name: Case(When(latest, then=Value(value)), default=F(name)) for name, value in last.items()},
    )


def call_summary_posts_sweep(*, received_before: timedelta = timedelta(minutes=1)) -> dict[str, int]:
    """Apply posts a request stored but could not apply (it broke on our side, or died midway)."""
    stale = CallSummaryPost.objects.filter(
        state=PostState.RECEIVED, received_at__lt=timezone.now() - received_before
    ).order_by("pk")
    counts: dict[str, int] = defaultdict(int)
    for post in stale.iterator(chunk_size=500):
        try:
            counts[call_summary_post_apply(post=post).state] += 1
        except Exception:  # one post breaking on our side must not stop the sweep of the others
            logger.exception("call summary post %s could not be applied; it stays for the next sweep", post.pk)
            counts["errors"] += 1
    return dict(counts)


def leads_redial(*, leads, outcomes: list[str], older_than: timedelta | None = None, user=None) -> PushSummary:
    """Push again the leads whose last call ended in one of `outcomes` (a dial or a customer status), and not
    within `older_than`; CloudAgent gets them with checkDuplicate=false, since a new attempt is the point."""
    outcomes = outcomes_canonical(outcomes)
    selected = leads_due_redial(leads=leads, outcomes=outcomes, older_than=older_than)
    reason = "redial: " + ",".join(outcomes) + (f" older than {_duration(older_than)}" if older_than else "")
    return leads_push_redial(leads=selected, reason=reason, user=user)


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"
