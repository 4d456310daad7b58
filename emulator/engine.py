"""CloudAgent's state and behaviour: accounts and campaigns, the rate limiter, the queue of accepted requests and
their per-row checks (duplicates, DND), the callbacks, and the dialling of accepted leads with its call summaries
(docs/cloudagent-contract.md, docs/cloudagent-call-summary.md)."""

from __future__ import annotations

import heapq
import hmac
import itertools
import json
import random
import re
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from urllib.parse import quote, quote_plus

from emulator.delivery import Callback, SummaryPost, post_with_tries
from emulator.dialer import WeightedDraw, call_summary
from emulator.files import FailedFiles
from emulator.protocol import (
    API_KEY_EMPTY,
    CAMPAIGN_NAME_EMPTY,
    INVALID_CAMPAIGN,
    INVALID_CREDENTIALS,
    INVALID_DATA,
    KOLKATA,
    NAME,
    NOT_JSON_PAGE,
    PHONE,
    PRIORITY,
    PROVIDER_TIME,
    RATE_LIMITED,
    REASON_DND,
    REASON_DUPLICATE,
    REASON_NAME,
    REASON_PHONE_EMPTY,
    REASON_PHONE_INVALID,
    REASON_PRIORITY,
    REASON_ROW_TOO_LONG,
    REDACTED,
    SERVER_ERROR_PAGE,
    TOO_MANY_ROWS,
    UPLOAD_FAILED,
    UPLOADED,
    USER_NAME_EMPTY,
    as_flag,
    as_text,
    call_summary_body,
    callback_body,
    national_digits,
    now_text,
    parse_bulk_data,
)
from emulator.settings import FAULTS, Settings, parse_weights

PROCESS_NOW_WAIT = 60.0  # seconds process-now waits for posts other threads are still delivering


@dataclass
class Campaign:
    """A campaign as CloudAgent holds it: its column map, the leads uploaded to it and its URL to Push."""

    name: str
    kind: str  # "outbound" or "inbound"
    map: list[str]
    push_url: str = ""  # from the config file; POST /_emulator/push-url overrides it until a reset
    leads: list[tuple[str, list[str], list]] = field(default_factory=list)  # (transactionId, map, row)
    phones: set[str] = field(default_factory=set)
    started: bool = False
    next_dial: float = 0.0  # monotonic time of the campaign's next free dial slot


@dataclass
class Account:
    user_name: str
    api_key: str
    campaigns: dict[str, Campaign]
    push_url: str = ""  # account-wide URL to Push from the config file


@dataclass
class Transaction:
    """An accepted request: queued, then processed once into the data its callback carries."""

    id: str
    user_name: str
    campaign: Campaign
    map: list[str]
    rows: list[list]
    check_duplicate: bool
    is_delete: bool
    start: bool
    callback_url: str
    file_base_url: str
    due: float
    state: str = "queued"
    result: dict | None = None
    failed_rows: list[dict] = field(default_factory=list)


@dataclass
class Call:
    """One dial of an accepted lead. state: scheduled (waiting for its campaign's dial slot) -> dialled."""

    monitor_ucid: str
    account: Account
    campaign: Campaign
    transaction_id: str
    lead: dict[str, str]
    push_url: str
    base_url: str
    due: float
    state: str = "scheduled"
    dialled_at: float | None = None  # monotonic
    outcome: str = ""
    summary: dict | None = None
    posts: list[SummaryPost] = field(default_factory=list)


@dataclass
class Reply:
    """What the HTTP handler does with an API request once the emulator has decided."""

    status: int
    body: bytes
    content_type: str = "application/json"
    delay: float = 0.0
    drop: bool = False
    callbacks_first: list[Callback] = field(default_factory=list)
    generation: int = 0


class Emulator:
    """All state, behind one lock (a Condition, so the worker can sleep on it).

    Handler threads call `add_bulk_data` and the control methods; one worker thread processes the queue in
    arrival order, as the provider's page says ("added to the outbound campaign in a queued manner"), dials the
    accepted leads when their campaign's slot comes and hands due call summaries to threads of their own; each
    callback and summary is delivered by a thread of its own, so a slow receiver never holds up the queue."""

    def __init__(self, accounts: list[Account], settings: Settings):
        self._lock = threading.Condition()
        self._accounts = {account.user_name: account for account in accounts}
        self._api_keys = {account.api_key for account in accounts if account.api_key}
        self.settings = settings
        self.files = FailedFiles()
        self._stopping = threading.Event()
        self._worker = threading.Thread(target=self._work, name="cloudagent-queue", daemon=True)
        self._transaction_numbers = itertools.count(1)  # never reset: transactionIds stay unique across resets
        self._call_numbers = itertools.count(1)  # never reset: monitorUCIDs stay unique across resets
        self._timer_numbers = itertools.count()  # tie-breaker of the timers heap
        self._id_digits = random.Random()
        self._generation = 0
        self._sending = 0
        self._clear()

    def _clear(self) -> None:
        # A callback or summary still in flight belongs to the old generation: it is neither sent nor recorded.
        self._generation += 1
        self._requests: list[dict] = []
        self._transactions: dict[str, Transaction] = {}
        self._queue: deque[Transaction] = deque()
        self._callbacks: list[Callback] = []
        self.files.clear()
        self._window: defaultdict[str, deque[float]] = defaultdict(deque)
        self._forced: deque[str] = deque()
        self._rng = random.Random(self.settings.seed)
        self._seed_dialling()
        self._calls: list[Call] = []
        self._posts: list[SummaryPost] = []
        self._timers: list[tuple[float, int, Call | SummaryPost]] = []  # heap: dials and delayed posts by due time
        # Set through POST /_emulator/push-url: (userName, campaign or None for account-wide) -> URL.
        self._push_urls: dict[tuple[str, str | None], str] = {}
        for account in self._accounts.values():
            for campaign in account.campaigns.values():
                campaign.leads, campaign.phones, campaign.started, campaign.next_dial = [], set(), False, 0.0

    def _seed_dialling(self) -> None:
        # Its own RNG, so the dials' outcomes do not depend on how many requests drew a fault.
        self._dial_rng = random.Random(f"dial:{self.settings.seed}")
        self._outcomes = WeightedDraw(self._dial_rng)
        self._dispositions = WeightedDraw(self._dial_rng)

    def start(self) -> None:
        self._worker.start()

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            self._lock.notify_all()
        self._worker.join(timeout=5)

    def pause(self, seconds: float) -> None:
        """Sleep that ends early on shutdown."""
        self._stopping.wait(seconds)

    # --- Control ------------------------------------------------------------------------------------------------

    def configure(self, changes: Mapping[str, object]) -> dict:
        with self._lock:
            self.settings = self.settings.updated(changes)
            if "seed" in changes:
                self._rng = random.Random(self.settings.seed)
                self._seed_dialling()
            self._lock.notify_all()
            return asdict(self.settings)

    def reset(self) -> dict:
        """Forget requests, queue, leads, callbacks, calls, files, rate-limit history, forced faults and the URLs
        to Push set at run time; keep settings (push_url included) and the config file's URLs to Push."""
        with self._lock:
            self._clear()
            self._lock.notify_all()
        return {"reset": True}

    def force_fault(self, fault: object, count: object = 1) -> dict:
        if fault not in FAULTS:
            raise ValueError(f"fault must be one of {', '.join(FAULTS)}")
        if type(count) is not int or count < 1:
            raise ValueError("count must be a whole number >= 1")
        with self._lock:
            self._forced.extend([fault] * count)
            return {"forced_faults": list(self._forced)}

    def set_push_url(self, user_name: object, campaign_name: object, url: object) -> dict:
        """Set (or, with an empty url, remove) the URL to Push of one campaign, or account-wide when no campaign
        is named, as an operator does in CloudAgent's admin. Applies to the leads processed from now on."""
        url = "" if url is None else url
        if not isinstance(url, str) or (url and not url.startswith(("http://", "https://"))):
            raise ValueError("url must be an http:// or https:// URL, or empty to remove it")
        with self._lock:
            account = self._accounts.get(user_name) if isinstance(user_name, str) else None
            if account is None:
                raise ValueError(f"userName must name a configured account, got {user_name!r}")
            if campaign_name is not None and campaign_name not in account.campaigns:
                raise ValueError(f"campaign must be a campaign of {account.user_name}, got {campaign_name!r}")
            key = (account.user_name, campaign_name)
            if url:
                self._push_urls[key] = url
            else:
                self._push_urls.pop(key, None)
            return {"push_urls": self._push_urls_view()}

    def process_now(self) -> dict:
        """Process every queued request, dial every scheduled call and send every waiting callback and summary
        (delayed ones included) now, then wait for the posts other threads are delivering: a test gets a settled
        state without sleeping."""
        with self._lock:
            processed = len(self._queue)
            while self._queue:
                self._process(self._queue.popleft())
            scheduled = [item for _, _, item in self._timers if isinstance(item, Call)]
            self._timers = [timer for timer in self._timers if not isinstance(timer[2], Call)]
            heapq.heapify(self._timers)
            for call in scheduled:
                self._dial(call)
            waiting = [callback for callback in self._callbacks if callback.state == "waiting"]
            summaries = [summary for summary in self._posts if summary.state == "waiting"]
            generation = self._generation
        for callback in waiting:
            self.deliver(callback, generation)
        for summary in summaries:
            self.deliver_summary(summary, generation)
        with self._lock:
            settled = self._lock.wait_for(lambda: self._sending == 0, timeout=PROCESS_NOW_WAIT)
        return {
            "processed": processed,
            "callbacks_sent": len(waiting),
            "calls_dialled": len(scheduled),
            "summaries_sent": len(summaries),
            "settled": settled,
        }

    def inspect(self, sections: list[str] | None = None) -> dict:
        """Everything received and done, as JSON-ready copies. Never an apiKey (see inspect_json)."""
        views = {
            "settings": lambda: asdict(self.settings),
            "now": lambda: {"time": time.time(), "monotonic": time.monotonic()},
            "accounts": self._accounts_view,
            "requests": lambda: [dict(record) for record in self._requests],
            "transactions": lambda: [self._transaction_view(tx) for tx in self._transactions.values()],
            "queue": lambda: [tx.id for tx in self._queue],
            "leads": self._leads_view,
            "callbacks": lambda: [self._callback_view(callback) for callback in self._callbacks],
            "forced_faults": lambda: list(self._forced),
            "push_urls": self._push_urls_view,
            "calls": lambda: [self._call_view(call) for call in self._calls],
        }
        unknown = sorted(set(sections or ()) - set(views))
        if unknown:
            raise ValueError(f"unknown section(s): {', '.join(unknown)}")
        with self._lock:
            return {name: view() for name, view in views.items() if not sections or name in sections}

    def inspect_json(self, sections: list[str] | None = None) -> bytes:
        """inspect() as JSON with every configured apiKey blotted out, wherever a client may have put one (a
        misnamed field, a callBackUrl's query) and wherever we put it (a call summary's Apikey)."""
        text = json.dumps(self.inspect(sections))
        for key in self._api_keys:
            for form in {json.dumps(key)[1:-1], quote(key, safe=""), quote_plus(key)}:
                text = text.replace(form, REDACTED)
        return text.encode()

    def _accounts_view(self) -> list[dict]:
        return [
            {
                "userName": account.user_name,
                "campaigns": [
                    {
                        "name": campaign.name,
                        "type": campaign.kind,
                        "map": list(campaign.map),
                        "started": campaign.started,
                        "leads": len(campaign.leads),
                    }
                    for campaign in account.campaigns.values()
                ],
            }
            for account in self._accounts.values()
        ]

    def _leads_view(self) -> dict[str, list[dict]]:
        """Campaign name -> its leads: each row's values under their headers, plus transactionId and userName."""
        leads: dict[str, list[dict]] = {}
        for account in self._accounts.values():
            for campaign in account.campaigns.values():
                leads.setdefault(campaign.name, []).extend(
                    {**dict(zip(column_map, row, strict=True)), "transactionId": tx_id, "userName": account.user_name}
                    for tx_id, column_map, row in campaign.leads
                )
        return leads

    def _push_urls_view(self) -> dict:
        """The URL to Push each campaign's leads would be dialled with now, and where each came from."""
        return {
            "default": self.settings.push_url,
            "accounts": {
                account.user_name: {
                    "account": self._push_urls.get((account.user_name, None), account.push_url),
                    "campaigns": {
                        campaign.name: self._push_url_for(account, campaign)
                        for campaign in account.campaigns.values()
                        if campaign.kind == "outbound"
                    },
                }
                for account in self._accounts.values()
            },
        }

    @staticmethod
    def _transaction_view(tx: Transaction) -> dict:
        return {
            "transactionId": tx.id,
            "userName": tx.user_name,
            "campaign": tx.campaign.name,
            "rows": len(tx.rows),
            "checkDuplicate": tx.check_duplicate,
            "isDelete": tx.is_delete,
            "start": tx.start,
            "callBackUrl": tx.callback_url,
            "state": tx.state,
            "result": tx.result,
            "failed_rows": list(tx.failed_rows),
        }

    @staticmethod
    def _callback_view(callback: Callback) -> dict:
        last = callback.tries[-1] if callback.tries else {}
        return {
            "id": callback.id,
            "transactionId": callback.transaction_id,
            "url": callback.url,
            "shape": callback.shape,
            "content_type": callback.content_type,
            "body": callback.body,
            "copy": callback.copy,
            "state": callback.state,
            "tries": list(callback.tries),
            "status": last.get("status"),
        }

    @staticmethod
    def _call_view(call: Call) -> dict:
        return {
            "monitorUCID": call.monitor_ucid,
            "userName": call.account.user_name,
            "campaign": call.campaign.name,
            "transactionId": call.transaction_id,
            "PhoneNumber": call.lead.get("PhoneNumber", ""),
            "push_url": call.push_url,
            "state": call.state,
            "due": call.due,
            "dialled_at": call.dialled_at,
            "outcome": call.outcome,
            "summary": dict(call.summary) if call.summary else None,
            "posts": [
                {
                    "id": summary.id,
                    "kind": summary.kind,
                    "url": summary.url,
                    "state": summary.state,
                    "tries": list(summary.tries),
                    "status": summary.tries[-1]["status"] if summary.tries else None,
                }
                for summary in call.posts
            ],
        }

    # --- The API ------------------------------------------------------------------------------------------------

    def add_bulk_data(self, fields: dict[str, object], content_type: str, file_base_url: str) -> Reply:
        """Decide the answer to one API request, record it, and queue (or process) what is accepted."""
        with self._lock:
            settings = self.settings
            record = {
                "id": len(self._requests) + 1,
                "time": time.time(),
                "monotonic": time.monotonic(),  # the rate limiter's clock
                "received_at": now_text(),
                "userName": fields.get("userName"),
                "campaign": fields.get("campaignName"),
                "rows": None,
                "map": None,
                "content_type": content_type,
                "fields": self._shown_fields(fields),
                "outcome": "unprocessed",
                "counted": False,
                "fault": self._forced.popleft() if self._forced else self._draw_fault(settings),
                "http_status": None,
                "answer": None,
                "transactionId": None,
            }
            self._requests.append(record)
            fault = record["fault"]
            if fault in ("error", "non_json") and not settings.faults_after_queue:
                return self._garbage(record, fault)

            if fault == "rate_limit":  # forced: answered at once, not counted (no real window was full)
                answer, tx = RATE_LIMITED, None
            else:
                answer, tx = self._decide(record, fields, file_base_url, settings)
            if tx is not None:
                record.update(outcome="accepted", transactionId=tx.id)
            else:
                record["outcome"] = "rate_limited" if answer is RATE_LIMITED else "refused"
            if answer is RATE_LIMITED:
                status = settings.rate_limit_status
            else:
                status = 200 if tx is not None else settings.error_status
            reply = Reply(status=status, body=json.dumps(answer).encode())
            record.update(http_status=status, answer=answer)

            if tx is not None:
                self._transactions[tx.id] = tx
                if settings.callback_before_response:
                    reply.callbacks_first, reply.generation = self._process(tx), self._generation
                else:
                    self._queue.append(tx)
                    self._lock.notify_all()
            if fault in ("error", "non_json"):
                return self._garbage(record, fault)
            reply.delay = settings.slow_seconds if fault == "slow" else 0.0
            reply.drop = fault == "drop"
            return reply

    def _decide(
        self, record: dict, fields: dict, file_base_url: str, settings: Settings
    ) -> tuple[dict, Transaction | None]:
        """The synchronous answer, checked in the documented order (the contract's Synchronous answers)."""
        api_key, user_name, campaign_name = (
            as_text(fields.get(name)) for name in ("apiKey", "userName", "campaignName")
        )
        if not api_key:
            return API_KEY_EMPTY, None
        if not user_name:
            return USER_NAME_EMPTY, None
        account = self._accounts.get(user_name)
        if account is None or not hmac.compare_digest(account.api_key.encode(), api_key.encode()):
            return INVALID_CREDENTIALS, None
        if not campaign_name:
            return CAMPAIGN_NAME_EMPTY, None
        campaign = account.campaigns.get(campaign_name)
        if campaign is None or campaign.kind != "outbound":
            return INVALID_CAMPAIGN, None
        bulk = parse_bulk_data(fields.get("bulkData"))
        if bulk is None:
            return INVALID_DATA, None
        column_map, rows = bulk
        record.update(map=column_map, rows=len(rows))
        admitted = self._admit(user_name, record["monotonic"], settings)
        record["counted"] = admitted or settings.rate_limited_count
        if not admitted:
            return RATE_LIMITED, None
        # The size check comes after the rate limiter, so an oversized request has spent its slot.
        if len(rows) > settings.max_rows:
            return TOO_MANY_ROWS, None
        tx = Transaction(
            id=self._transaction_id(),
            user_name=user_name,
            campaign=campaign,
            map=column_map,
            rows=rows,
            check_duplicate=as_flag(fields.get("checkDuplicate")),
            is_delete=as_flag(fields.get("isDelete")),
            start=as_text(fields.get("action")).strip().lower() == "start",
            callback_url=as_text(fields.get("callBackUrl")).strip(),
            file_base_url=file_base_url,
            due=record["monotonic"] + settings.process_delay,
        )
        return {"transactionId": tx.id, "status": "success", "message": "queued successfully"}, tx

    def _admit(self, user_name: str, now: float, settings: Settings) -> bool:
        """Sliding log per account: at most N counted requests in any window (now - W, now]. The provider's window
        is not documented (the contract's Limits); a sliding one is the strictest reading a client must survive."""
        window = self._window[user_name]
        while window and window[0] <= now - settings.window_seconds:
            window.popleft()
        admitted = len(window) < settings.requests_per_window
        if admitted or settings.rate_limited_count:
            window.append(now)
        return admitted

    def _transaction_id(self) -> str:
        """24 or 25 digits, like the documented ids: epoch seconds, a sequence number, random digits."""
        sequence = next(self._transaction_numbers) % 10**6
        return f"{int(time.time())}{sequence:06d}{self._id_digits.randrange(10**7, 10**9)}"

    def _draw_fault(self, settings: Settings) -> str | None:
        """One draw per request not forced, whatever the rates: a seed gives the same faults to the same requests."""
        draw = self._rng.random()
        for fault, rate in (
            ("error", settings.error_rate),
            ("non_json", settings.non_json_rate),
            ("drop", settings.drop_rate),
            ("slow", settings.slow_rate),
        ):
            if draw < rate:
                return fault
            draw -= rate
        return None

    def _garbage(self, record: dict, fault: str) -> Reply:
        """A 500 from the PHP application, or an HTML page from something in front of it (the non-JSON cases a
        client must survive)."""
        status, page = (500, SERVER_ERROR_PAGE) if fault == "error" else (200, NOT_JSON_PAGE)
        record.update(http_status=status, answer=page.decode())
        return Reply(status=status, body=page, content_type="text/html; charset=UTF-8")

    @staticmethod
    def _shown_fields(fields: dict[str, object]) -> dict[str, object]:
        """The fields for inspection: no bulkData (see "map" and "rows"), and no apiKey value, even a wrong one or
        one sent under a misspelt name (inspect_json also blots out the configured keys anywhere)."""
        shown = {}
        for name, value in fields.items():
            if name == "bulkData":
                continue
            text = as_text(value)
            shown[name] = REDACTED if text and re.sub(r"[^a-z]", "", name.lower()) == "apikey" else text
        return shown

    # --- Processing (the lock is held) ----------------------------------------------------------------------

    def _process(self, tx: Transaction) -> list[Callback]:
        """Add the rows to the campaign, schedule their dials and build the callback (the contract's asynchronous
        result)."""
        settings = self.settings
        started = datetime.now(KOLKATA)
        total = len(tx.rows)
        added: list[list] = []
        if self._map_fits(tx, settings):
            status, message = UPLOADED
            failed = self._add_rows(tx, settings, added)
            not_processed = len(failed)
        else:
            status, message = UPLOAD_FAILED
            failed, not_processed = [], total
        file_url = ""
        if failed and not settings.empty_failed_path_on_partial:
            file_url = self.files.store(
                tx.map,
                failed,
                base_url=tx.file_base_url,
                file_format=settings.failed_file_format,
                ttl=settings.failed_file_ttl,
            )
        if status == "Success" and tx.start:
            tx.campaign.started = True
        tx.state = "processed"
        tx.failed_rows = [
            {"index": index, "PhoneNumber": as_text(row[tx.map.index("PhoneNumber")]), "reason": reason}
            for index, row, reason in failed
        ]
        tx.result = {  # the contract: every value a string, counts included; keys in the documented order
            "totalNoUploaded": str(total),
            "numbersProcessed": str(total - not_processed),
            "numbersNotProcessed": str(not_processed),
            "failedFilePath": file_url,
            "transactionId": tx.id,
            "status": status,
            "message": message,
            "startDateTime": started.strftime(PROVIDER_TIME),
            "endDateTime": datetime.now(KOLKATA).strftime(PROVIDER_TIME),
        }
        self._schedule_dials(tx, added, settings)
        return self._make_callbacks(tx, settings)

    @staticmethod
    def _map_fits(tx: Transaction, settings: Settings) -> bool:
        """The whole upload fails when the map lacks PhoneNumber, differs from the campaign's, or a row's width
        differs from the map's (the provider's page: three documented Fail cases)."""
        if "PhoneNumber" not in tx.map:
            return False
        if settings.map_match == "exact":
            same = tx.map == tx.campaign.map
        else:
            same = sorted(tx.map) == sorted(tx.campaign.map)
        return same and all(len(row) == len(tx.map) for row in tx.rows)

    def _add_rows(self, tx: Transaction, settings: Settings, added_rows: list[list]) -> list[tuple[int, list, str]]:
        """Check each row and add the good ones (to the campaign and to `added_rows`); returns (index, row, reason)
        for the others."""
        campaign = tx.campaign
        dnd = {national_digits(number) for number in settings.dnd}
        phone_at = tx.map.index("PhoneNumber")
        # This upload's numbers join the campaign's only at the end, so "already in the campaign" means before
        # this upload; numbers repeated inside the upload are caught with `added`.
        added: set[str] = set()
        failed = []
        for index, row in enumerate(tx.rows):
            phone = as_text(row[phone_at]).strip()
            reason = self._row_reason(tx.map, row, phone, dnd, settings)
            if reason is None and self._is_duplicate(tx, phone, added):
                reason = REASON_DUPLICATE
            if reason is not None:
                failed.append((index, row, reason))
                continue
            added.add(phone)
            added_rows.append(row)
            campaign.leads.append((tx.id, tx.map, row))
        campaign.phones |= added
        return failed

    @staticmethod
    def _row_reason(column_map: list[str], row: list, phone: str, dnd: set[str], settings: Settings) -> str | None:
        values = dict(zip(column_map, row, strict=True))
        if not phone:
            return REASON_PHONE_EMPTY
        if not PHONE.fullmatch(phone):
            return REASON_PHONE_INVALID
        # The contract's Limits: "2000 characters per row including all headers": each header plus its cell's text.
        if sum(len(header) + len(as_text(value)) for header, value in values.items()) > settings.max_row_chars:
            return REASON_ROW_TOO_LONG
        if "Name" in values and not NAME.fullmatch(as_text(values["Name"])):
            return REASON_NAME
        if "Priority" in values:
            priority = as_text(values["Priority"]).strip()
            if priority:
                if not (PRIORITY.fullmatch(priority) and 1 <= int(priority) <= 99):
                    return REASON_PRIORITY
            elif settings.empty_priority_fails:
                return REASON_PRIORITY
        if national_digits(phone) in dnd:
            return REASON_DND
        return None

    @staticmethod
    def _is_duplicate(tx: Transaction, phone: str, added: set[str]) -> bool:
        """The contract's Request: isDelete skips numbers the campaign already holds; checkDuplicate also keeps
        only the first of a number repeated in the upload; when both are sent only isDelete counts. Numbers compare
        as sent (after trimming): a client that writes one number two ways gets it twice, as it would there."""
        if tx.is_delete:
            return phone in tx.campaign.phones
        if tx.check_duplicate:
            return phone in tx.campaign.phones or phone in added
        return False

    # --- Callbacks --------------------------------------------------------------------------------------------

    def _make_callbacks(self, tx: Transaction, settings: Settings) -> list[Callback]:
        if not tx.callback_url:
            return []
        data = tx.result
        if settings.callback_padding:
            data = {key: f" {value} " for key, value in data.items()}
        content_type, body = callback_body(data, settings.callback_shape)
        made = [
            Callback(
                id=len(self._callbacks) + copy,
                transaction_id=tx.id,
                url=tx.callback_url,
                shape=settings.callback_shape,
                content_type=content_type,
                body=body,
                copy=copy,
                due=time.monotonic() + settings.callback_delay,
            )
            for copy in range(1, settings.duplicate_callbacks + 1)
        ]
        self._callbacks.extend(made)
        return made

    def deliver(self, callback: Callback, generation: int) -> None:
        """POST one callback unless another thread took it or a reset forgot it. Nothing documents the
        provider's retries; we try again after a connection error or a 5xx, 1 + callback_retries tries in all,
        and record each try."""
        self._post_unless_taken(
            callback,
            generation,
            lambda settings: {
                "tries": settings.callback_retries + 1,
                "retry_delay": settings.callback_retry_delay,
                "timeout": settings.callback_timeout,
                "accepted": lambda status: status < 500,
            },
        )

    def _post_unless_taken(
        self, target: Callback | SummaryPost, generation: int, tries_of: Callable[[Settings], dict]
    ) -> None:
        """Claims `target` and POSTs it with the lock released; `tries_of` reads its retry policy from the settings
        taken with the claim, so a config change mid-delivery does not mix two policies."""
        with self._lock:
            if generation != self._generation or target.state != "waiting":
                return
            target.state, settings = "sending", self.settings
            self._sending += 1
        answered = False
        try:
            answered = post_with_tries(
                target,
                stopping=self._stopping,
                record=lambda attempt: self._record_try(target, attempt),
                **tries_of(settings),
            )
        finally:
            with self._lock:
                target.state = "answered" if answered else "failed"
                self._sending -= 1
                self._lock.notify_all()

    def _record_try(self, target: Callback | SummaryPost, attempt: dict) -> None:
        with self._lock:
            target.tries.append(attempt)

    def _deliver_when_due(self, callback: Callback, generation: int) -> None:
        if not self._stopping.wait(max(0.0, callback.due - time.monotonic())):
            self.deliver(callback, generation)

    # --- Dialling (the lock is held, except in deliver_summary) ----------------------------------------------

    def _push_url_for(self, account: Account, campaign: Campaign) -> str:
        """The campaign's own URL to Push, else the account's, else the emulator-wide default."""
        return (
            self._push_urls.get((account.user_name, campaign.name))
            or campaign.push_url
            or self._push_urls.get((account.user_name, None))
            or account.push_url
            or self.settings.push_url
        )

    def _schedule_dials(self, tx: Transaction, rows: list[list], settings: Settings) -> None:
        """Each lead just added gets a dial at its campaign's next slot, 1/dial_rate apart: the campaign dials at
        its own pace whatever the other campaigns do. Nothing is dialled without a URL to Push to report to."""
        account = self._accounts[tx.user_name]
        push_url = self._push_url_for(account, tx.campaign)
        if not push_url or not rows:
            return
        now = time.monotonic()
        for row in rows:
            due = max(now, tx.campaign.next_dial)
            tx.campaign.next_dial = due + 1 / settings.dial_rate
            call = Call(
                monitor_ucid=f"{int(time.time())}{next(self._call_numbers) % 10**6:06d}",
                account=account,
                campaign=tx.campaign,
                transaction_id=tx.id,
                lead={header: as_text(value).strip() for header, value in zip(tx.map, row, strict=True)},
                push_url=push_url,
                base_url=tx.file_base_url,
                due=due,
            )
            self._calls.append(call)
            heapq.heappush(self._timers, (due, next(self._timer_numbers), call))
        self._lock.notify_all()

    def _dial(self, call: Call) -> None:
        """The call happens: an outcome, a summary, and its posts as push_mode says (immediate: now, without
        Disposition; delayed: push_delay later, with it; both: the two, same monitorUCID)."""
        settings = self.settings
        call.outcome = self._outcomes.pick(parse_weights(settings.dial_outcomes, "dial_outcomes"), settings.dial_draw)
        disposition = ""
        if call.outcome == "answered":
            disposition = self._dispositions.pick(
                parse_weights(settings.dispositions, "dispositions"), settings.dial_draw
            )
        call.summary = call_summary(
            monitor_ucid=call.monitor_ucid,
            user_name=call.account.user_name,
            api_key=call.account.api_key,
            campaign=call.campaign.name,
            lead=call.lead,
            outcome=call.outcome,
            disposition=disposition,
            call_type=settings.dial_type,
            recording_base_url=call.base_url,
            ended=datetime.now(KOLKATA),
            rng=self._dial_rng,
        )
        now = time.monotonic()
        call.state, call.dialled_at = "dialled", now
        if settings.push_mode in ("immediate", "both"):
            undisposed = {name: value for name, value in call.summary.items() if name != "Disposition"}
            self._add_summary_post(call, "immediate", undisposed, now)
        if settings.push_mode in ("delayed", "both"):
            self._add_summary_post(call, "delayed", call.summary, now + settings.push_delay)

    def _add_summary_post(self, call: Call, kind: str, summary: dict, due: float) -> None:
        content_type, body = call_summary_body(summary)
        made = SummaryPost(
            id=len(self._posts) + 1,
            monitor_ucid=call.monitor_ucid,
            kind=kind,
            url=call.push_url,
            content_type=content_type,
            body=body,
            due=due,
        )
        call.posts.append(made)
        self._posts.append(made)
        heapq.heappush(self._timers, (due, next(self._timer_numbers), made))

    def recording(self, monitor_ucid: str) -> bool:
        """Whether an answered call of this monitorUCID has a recording to serve."""
        with self._lock:
            return any(call.monitor_ucid == monitor_ucid and call.outcome == "answered" for call in self._calls)

    def deliver_summary(self, summary: SummaryPost, generation: int) -> None:
        """POST one call summary unless another thread took it or a reset forgot it: 1 + push_retries tries,
        push_retry_delay apart, until the receiver answers 2xx (the provider's "Call back hit tries")."""
        self._post_unless_taken(
            summary,
            generation,
            lambda settings: {
                "tries": settings.push_retries + 1,
                "retry_delay": settings.push_retry_delay,
                "timeout": settings.push_timeout,
                "accepted": lambda status: 200 <= status < 300,
            },
        )

    # --- The worker ---------------------------------------------------------------------------------------------

    def _next_wait(self) -> float | None:
        """Seconds until the next queued request or timer is due (<= 0: one is due), None when nothing waits."""
        dues = ([self._queue[0].due] if self._queue else []) + ([self._timers[0][0]] if self._timers else [])
        return min(dues) - time.monotonic() if dues else None

    def _work(self) -> None:
        """The worker: requests in arrival order, each no earlier than process_delay after it arrived; then the
        dials and summary posts whose time has come."""
        while True:
            with self._lock:
                while not self._stopping.is_set():
                    wait = self._next_wait()
                    if wait is not None and wait <= 0:
                        break
                    self._lock.wait(wait)
                if self._stopping.is_set():
                    return
                now, callbacks, summaries = time.monotonic(), [], []
                if self._queue and self._queue[0].due <= now:
                    callbacks = self._process(self._queue.popleft())
                while self._timers and self._timers[0][0] <= now:
                    _, _, item = heapq.heappop(self._timers)
                    if isinstance(item, Call):
                        self._dial(item)
                    else:
                        summaries.append(item)
                generation = self._generation
            for callback in callbacks:
                threading.Thread(target=self._deliver_when_due, args=(callback, generation), daemon=True).start()
            for summary in summaries:
                threading.Thread(target=self.deliver_summary, args=(summary, generation), daemon=True).start()
