"""Which file column becomes which campaign field: proposed from the operator's own choice, the campaign's map,
a recognised export (source profile), the header aliases, and what the columns hold.

The phone column is the one that matters: without it nothing can be imported, and a wrong one imports a file of
garbage or of the seller's own number. So content only ever *proposes*: a column whose sampled values mostly
parse as phone numbers is a candidate, a single candidate is proposed with the reason shown, and several are
reported for the operator to choose from -- never picked silently.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from campaigns.importing.phones import phone_normalizer
from campaigns.importing.profiles import SourceProfile, recognise
from campaigns.importing.readers import cell_text
from campaigns.normalize import PhoneError
from cloudagent.rules import PHONE_HEADERS, header_key

# Header aliases (issue 6): compared by header_key (case, spaces, underscores, dots and hyphens dropped).
ALIASES = {
    "PhoneNumber": PHONE_HEADERS[1:],
    "Name": ("name", "full name", "customer name", "lead name"),
    "Priority": ("priority",),
    "ExpiryDate": ("expiry", "expiry date", "expires"),
    "AgentId": ("agent", "agent id"),
    "skill": ("skill",),
}
EXTRA = "extra"  # kept on the lead under its own header, not sent to CloudAgent
IGNORE = "ignore"
# A column is a phone candidate when at least this share of its sampled, non-empty values are phone numbers.
CANDIDATE_SHARE = 0.6
SAMPLE_VALUES = 3
REMEMBERED = "your last mapping of this file"
NOT_IN_MAP = "not in the campaign's column map"


class MappingError(ValueError):
    """The operator's choice names a header or a field that does not exist; the message says which."""


@dataclass
class ColumnProposal:
    position: int
    header: str
    samples: list[str]
    field: str  # a campaign map column, EXTRA or IGNORE
    reason: str
    # The share of its sampled values that are phone numbers; None when the phone column was decided otherwise
    # (content is then not read) or the column had no value in the sample.
    phone_share: float | None

    @property
    def is_phone_candidate(self) -> bool:
        return self.phone_share is not None and self.phone_share >= CANDIDATE_SHARE


@dataclass
class MappingProposal:
    profile: SourceProfile | None
    columns: list[ColumnProposal]
    warnings: list[str] = field(default_factory=list)

    @property
    def index(self) -> dict[str, int]:
        """Campaign field -> position, for the fields some column gives."""
        return {c.field: c.position for c in self.columns if c.field not in (EXTRA, IGNORE)}

    @property
    def extras(self) -> list[tuple[str, int]]:
        return [(c.header, c.position) for c in self.columns if c.field == EXTRA]

    @property
    def phone_candidates(self) -> list[ColumnProposal]:
        return sorted((c for c in self.columns if c.is_phone_candidate), key=lambda c: -c.phone_share)

    def phone_problem(self) -> str | None:
        """Why no phone column could be decided, naming the candidates found by content; None when one was."""
        if "PhoneNumber" in self.index:
            return None
        candidates = self.phone_candidates
        aliases = ", ".join(["PhoneNumber", *ALIASES["PhoneNumber"]])
        if not candidates:
            found = ", ".join(f"'{c.header}'" for c in self.columns if c.header) or "none"
            return (
                f"no phone number column: the header row needs one of {aliases} (it has {found}), "
                "and no column holds mostly phone numbers"
            )
        named = ", ".join(f"'{c.header}' ({c.phone_share:.0%} phone numbers)" for c in candidates)
        return f"no phone number column decided: several columns hold phone numbers: {named}; choose one"


def _phone_share(values: Sequence[str], region: str) -> float | None:
    if not values:
        return None
    normalize = phone_normalizer(region)
    good = 0
    for value in values:
        try:
            normalize(value)
        except PhoneError:
            continue
        good += 1
    return good / len(values)


def resolve_header(header: Sequence[str], wanted: str) -> str:
    """The file's header an operator means: the exact text, else the one equal once case, spaces, underscores,
    dots and hyphens are dropped."""
    if wanted in header:
        return wanted
    for name in header:
        if header_key(name) == header_key(wanted):
            return name
    raise MappingError(f"the file has no column '{wanted}' (it has {', '.join(repr(h) for h in header if h)})")


def header_signature(header: Sequence[str]) -> str:
    """What makes two files "the same export" for remembering a mapping: their headers, compared as keys."""
    return hashlib.sha256("\x1f".join(header_key(h) for h in header).encode()).hexdigest()


def propose_mapping(
    *,
    header: Sequence[str],
    sample_rows: Sequence[Sequence],
    column_map: Sequence[str],
    region: str,
    chosen: Mapping[str, str] | None = None,
    remembered: Mapping[str, str] | None = None,
) -> MappingProposal:
    """`chosen` is header -> field from the operator for this file (the admin's mapping step, the CLI's --column),
    which wins over everything; `remembered` is header key -> field from the operator's last mapping of a file
    with this header, which wins over the rest."""
    fields = set(column_map) | {EXTRA, IGNORE}
    profile = recognise(header)
    by_map = {header_key(name): name for name in column_map}
    aliases = {header_key(alias): std for std, names in ALIASES.items() for alias in (std, *names)}
    header_keys = {header_key(h) for h in header}
    profile_field: dict[str, str] = {}  # header key -> field, for the first of a profile's headers present
    profile_extras = profile_never = set()
    if profile is not None:
        for target, names in profile.fields.items():
            present = [header_key(n) for n in names if header_key(n) in header_keys]
            if present and target in column_map:
                profile_field[present[0]] = target
        profile_extras = {header_key(h) for h in profile.extras}
        profile_never = {header_key(h) for h in profile.never}

    columns = []
    sampled: dict[int, list[str]] = {}
    for position, name in enumerate(header):
        values = [text for row in sample_rows if position < len(row) if (text := str(cell_text(row[position])).strip())]
        sampled[position] = values
        columns.append(ColumnProposal(position, name, values[:SAMPLE_VALUES], IGNORE, "", None))

    taken: dict[str, ColumnProposal] = {}

    def assign(column: ColumnProposal, target: str, reason: str) -> None:
        if target in taken:
            column.reason = f"column '{taken[target].header}' already gives {target}"
            return
        if target not in (EXTRA, IGNORE):
            taken[target] = column
        column.field, column.reason = target, reason

    chosen_positions: dict[int, str] = {}
    for wanted, target in (chosen or {}).items():
        if target not in fields:
            choices = ", ".join([*column_map, EXTRA, IGNORE])
            raise MappingError(f"'{target}' is not a field of this campaign (choose one of {choices})")
        chosen_positions[list(header).index(resolve_header(header, wanted))] = target
    label = profile.label if profile else ""
    remembered = remembered or {}
    # One pass per source, strongest first, so a weaker source never takes a field before a stronger one just
    # because its column comes first in the file.
    passes = (
        lambda c, key: (chosen_positions.get(c.position), "your choice"),
        lambda c, key: (
            remembered.get(key) if remembered.get(key) in fields else None,
            "your last mapping of this file",
        ),
        lambda c, key: (IGNORE if key in profile_never else None, f"never a lead's field in the {label}"),
        lambda c, key: (by_map.get(key), "the campaign's column map"),
        lambda c, key: (profile_field.get(key), label),
        lambda c, key: (aliases.get(key) if aliases.get(key) in column_map else None, "a usual header for it"),
        lambda c, key: (EXTRA if key in profile_extras else None, f"kept from the {label}"),
    )
    for proposal_of in passes:
        for column in columns:
            key = header_key(column.header)
            if column.reason or not key:
                continue
            target, reason = proposal_of(column, key)
            if target is not None:
                assign(column, target, reason)
    if "PhoneNumber" not in taken:
        # Only now is content read: checking every sampled value of every column as a phone number costs more than
        # the rest of the proposal, and a named phone column makes it moot.
        for column in columns:
            if header_key(column.header) not in profile_never:
                column.phone_share = _phone_share(sampled[column.position], region)
        operators = ("your choice", REMEMBERED)
        free = [c for c in columns if c.is_phone_candidate and c.field in (EXTRA, IGNORE) and c.reason not in operators]
        if len(free) == 1:
            assign(free[0], "PhoneNumber", f"its values are phone numbers ({free[0].phone_share:.0%} of a sample)")
    proposal = MappingProposal(profile=profile, columns=columns)
    for column in columns:
        if column.field != IGNORE:
            continue
        if not header_key(column.header):
            column.reason = "no header"
            proposal.warnings.append(f"column {column.position + 1} has no header; ignored")
        elif not column.reason:
            column.reason = NOT_IN_MAP
            proposal.warnings.append(f"column '{column.header}' is not in the campaign's column map; ignored")
        else:
            proposal.warnings.append(f"column '{column.header}' ignored: {column.reason}")
    return proposal
