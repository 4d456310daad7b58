"""The emulator's runtime settings. Whatever the contract marks as inferred, and every choice made where the
provider is silent, is a setting, so tests can try each reading."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace

from emulator.protocol import CALL_OUTCOMES

FAULTS = ("error", "non_json", "drop", "slow", "rate_limit")
CALLBACK_SHAPES = ("json-object", "json-string", "form", "json-string-unescaped")
FILE_FORMATS = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
# immediate: at once without Disposition ("Send callback immediately"); delayed: after push_delay with it (the
# provider's default, ~5 minutes); both: the two posts for one call, same monitorUCID.
PUSH_MODES = ("immediate", "delayed", "both")
# random: each dial draws from the weights (seeded); cycle: smooth weighted round robin, so every run of
# sum(weights) dials holds each outcome exactly its weight's number of times (integer weights).
DIAL_DRAWS = ("random", "cycle")


def _setting(default, help_text: str, choices: tuple[str, ...] | None = None):
    return field(default=default, metadata={"help": help_text, "choices": choices})


def parse_weights(text: str, name: str) -> dict[str, float]:
    """Weights written "a=3,b=1", as {"a": 3.0, "b": 1.0}; ValueError unless every weight is a number >= 0 and
    one is > 0."""
    weights: dict[str, float] = {}
    for item in text.split(","):
        label, sep, weight = item.rpartition("=")
        label = label.strip()
        try:
            value = float(weight)
        except ValueError:
            value = -1.0
        if not sep or not label or value < 0 or label in weights:
            raise ValueError(f"{name} must read like 'a=3,b=1' (distinct names, weights >= 0), got {text!r}")
        weights[label] = value
    if not any(weights.values()):
        raise ValueError(f"{name}: at least one weight must be > 0")
    return weights


@dataclass(frozen=True)
class Settings:
    """Runtime settings. Each one is a CLI flag (--process-delay), a key of the config file's "settings" object
    and of POST /_emulator/config (process_delay); a change applies from the next request on."""

    requests_per_window: int = _setting(5, "requests one account may make in any window (contract: 5 a minute)")
    window_seconds: float = _setting(60.0, "length of the sliding rate-limit window, in seconds")
    rate_limited_count: bool = _setting(
        False, "rate-limited requests count toward the window too (the provider does not say)"
    )
    max_rows: int = _setting(500, "rows allowed in one request (contract: 500)")
    max_row_chars: int = _setting(2000, "characters allowed per row, headers included (contract: 2000)")
    error_status: int = _setting(200, "HTTP status of the documented error and failure answers (contract: 200)")
    rate_limit_status: int = _setting(200, "HTTP status of the rate-limit answer (contract: 200)")
    process_delay: float = _setting(1.0, "seconds an accepted request waits in the queue before it is processed")
    map_match: str = _setting(
        "exact", "how bulkData.map must match the campaign's map: same order, or any order", ("exact", "any-order")
    )
    empty_priority_fails: bool = _setting(
        False, "an empty Priority cell fails its row (by default it counts as not passed)"
    )
    dnd: tuple[str, ...] = _setting((), "DND numbers, compared on their last 10 digits")
    failed_file_ttl: float = _setting(86400.0, "seconds a failed-rows link stays valid (contract: 24 hours)")
    failed_file_format: str = _setting("csv", "failed-rows file format (xlsx needs openpyxl)", tuple(FILE_FORMATS))
    empty_failed_path_on_partial: bool = _setting(
        False, 'a Success with rows not processed gives failedFilePath "" (the provider\'s sample)'
    )
    callback_shape: str = _setting("json-object", "body of the callback POST", CALLBACK_SHAPES)
    callback_delay: float = _setting(0.0, "extra seconds between processing and the callback")
    duplicate_callbacks: int = _setting(1, "send each callback this many times")
    callback_before_response: bool = _setting(
        False, "process and call back before the synchronous answer is sent (the client has no transactionId yet)"
    )
    callback_padding: bool = _setting(False, 'wrap every callback value in stray spaces, like the docs\' " xxxx "')
    callback_retries: int = _setting(2, "further tries of a callback after a connection error or a 5xx")
    callback_retry_delay: float = _setting(1.0, "seconds between tries of a callback")
    callback_timeout: float = _setting(10.0, "seconds to wait for the receiver's answer to a callback")
    error_rate: float = _setting(0.0, "fraction of requests answered HTTP 500 with a non-JSON body")
    non_json_rate: float = _setting(0.0, "fraction of requests answered HTTP 200 with an HTML body")
    drop_rate: float = _setting(0.0, "fraction of requests processed, then closed without an answer")
    slow_rate: float = _setting(0.0, "fraction of requests processed, then answered after --slow-seconds")
    slow_seconds: float = _setting(5.0, "delay of a slow answer, in seconds")
    faults_after_queue: bool = _setting(
        False, "error and non_json faults strike after the request was counted and queued"
    )
    seed: int = _setting(0, "seed of the fault RNG and of the dial outcome RNG (re-applied by reset)")
    push_url: str = _setting(
        "",
        "URL to Push for every account without one of its own (env CLOUDAGENT_EMULATOR_PUSH_URL); "
        "accepted leads are dialled only when their campaign has a URL to Push",
    )
    push_mode: str = _setting("delayed", "when call summaries are posted", PUSH_MODES)
    push_delay: float = _setting(300.0, "seconds after a call that the delayed summary (with Disposition) goes")
    push_retries: int = _setting(2, "further tries of a call summary after a connection error or a non-2xx")
    push_retry_delay: float = _setting(1.0, "seconds between tries of a call summary")
    push_timeout: float = _setting(10.0, "seconds to wait for the receiver's answer to a call summary")
    dial_rate: float = _setting(1.0, "calls per second per campaign")
    dial_outcomes: str = _setting(
        "answered=5,not_answered=2,Busy=1,NoResponse=1,Congestion=0.5,invalid_number=0.5",
        f"weights of the call outcomes ({', '.join(CALL_OUTCOMES)})",
    )
    dispositions: str = _setting(
        "Interested=3,Not Interested=2,Call Back Later=2,Wrong Number=1",
        "weights of the agent dispositions of answered calls",
    )
    dial_draw: str = _setting("random", "how outcomes follow the weights: seeded draws, or an exact cycle", DIAL_DRAWS)
    dial_type: str = _setting("Progressive", "the calls' Type (Progressive, Preview, Predictive ...)")

    def __post_init__(self):
        problems = []
        for item in fields(self):
            choices = item.metadata["choices"]
            if choices and getattr(self, item.name) not in choices:
                problems.append(f"{item.name} must be one of {', '.join(choices)}")
        rates = (self.error_rate, self.non_json_rate, self.drop_rate, self.slow_rate)
        if any(not 0 <= rate <= 1 for rate in rates) or sum(rates) > 1:
            problems.append("fault rates must lie in 0..1 and add up to at most 1")
        if min(self.requests_per_window, self.max_rows, self.max_row_chars, self.duplicate_callbacks) < 1:
            problems.append("requests_per_window, max_rows, max_row_chars and duplicate_callbacks must be >= 1")
        if min(self.window_seconds, self.callback_timeout, self.push_timeout, self.dial_rate) <= 0:
            problems.append("window_seconds, callback_timeout, push_timeout and dial_rate must be > 0")
        delays = (self.process_delay, self.callback_delay, self.callback_retry_delay, self.push_delay)
        if min(*delays, self.push_retry_delay, self.failed_file_ttl) < 0:
            problems.append("delays and failed_file_ttl must be >= 0")
        if min(self.slow_seconds, self.callback_retries, self.push_retries) < 0:
            problems.append("slow_seconds, callback_retries and push_retries must be >= 0")
        if not (100 <= self.error_status <= 599 and 100 <= self.rate_limit_status <= 599):
            problems.append("error_status and rate_limit_status must be HTTP statuses")
        if self.failed_file_format == "xlsx" and importlib.util.find_spec("openpyxl") is None:
            problems.append("failed_file_format xlsx needs openpyxl installed")
        if self.push_url and not self.push_url.startswith(("http://", "https://")):
            problems.append("push_url must be an http:// or https:// URL, or empty")
        for name in ("dial_outcomes", "dispositions"):
            try:
                weights = parse_weights(getattr(self, name), name)
            except ValueError as exc:
                problems.append(str(exc))
                continue
            unknown = sorted(set(weights) - set(CALL_OUTCOMES)) if name == "dial_outcomes" else []
            if unknown:
                problems.append(f"dial_outcomes: unknown outcome(s) {', '.join(unknown)}")
        if problems:
            raise ValueError("; ".join(problems))

    def updated(self, changes: Mapping[str, object]) -> Settings:
        """A copy with `changes` (JSON or CLI values) applied; ValueError names unknown or invalid ones."""
        current = asdict(self)
        unknown = sorted(set(changes) - set(current))
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
        return replace(self, **{name: _coerce(name, current[name], value) for name, value in changes.items()})


SETTING_NAMES = tuple(item.name for item in fields(Settings))


def _coerce(name: str, current: object, value: object) -> object:
    """A value in the type of the setting's default; JSON numbers, booleans and lists arrive loosely typed."""
    kind = type(current)
    if kind is bool and isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if kind is tuple and isinstance(value, list | tuple):
        return tuple(str(item) for item in value)
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind in (bool, int, str) and type(value) is kind:
        return value
    raise ValueError(f"{name}: expected {kind.__name__}, got {value!r}")
