"""A fast phone normaliser for one campaign region, compiled from `phonenumbers`' own metadata.

`phonenumbers.parse` + `is_valid_number` cost ~45 µs a number, mostly in regex cache look-ups and object set-up
(docs/performance.md, Import): at 100k rows that is most of an import. Lead files hold a few simple shapes
(bare national digits, a leading 0, the country code with or without + or 00, Meta's `p:` prefix, spaces, dashes,
dots and brackets), so for those this module replays the library's own parsing steps -- international prefix,
country code, national prefix, possible lengths, the number-type patterns -- with the patterns compiled once.

It only ever *accepts* on its own. A string of any other shape, a number of another country, a region whose
national prefix needs a transform rule, and every number it would refuse go to `normalize_phone` (the library),
so refusals keep the library's wording and anything it is not sure of gets the library's answer.
tests/test_importing_phones.py proves the two agree on a large generated sample.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers
from phonenumbers.phonemetadata import PhoneMetadata

from campaigns.normalize import normalize_phone

# The shapes replayed here: optional Meta "p:" prefix and opening brackets/spaces, an optional "+", then ASCII
# digits separated by up to three spaces, dashes, dots or brackets. Anything else (letters, extensions, "/", Unicode
# digits, "+" in the middle) is the library's.
_SIMPLE = re.compile(r"(?:p:)?[ (]*(\+?)([0-9](?:[ \-.()]{0,3}[0-9])*)")
_SEPARATORS = str.maketrans("", "", " -.()")
# phonenumbers.phonenumberutil: _MIN_LENGTH_FOR_NSN, _MAX_LENGTH_FOR_NSN, _MAX_INPUT_STRING_LENGTH.
_MIN_NSN, _MAX_NSN, _MAX_INPUT = 2, 17, 250
_TYPE_DESCS = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
    "mobile",
)


@dataclass(frozen=True)
class _Region:
    """One region's metadata with its patterns compiled: what `_number_type_helper` and the parsing steps read."""

    code: str
    country_code: str
    leading_digits: re.Pattern | None
    general: re.Pattern | None
    general_lengths: tuple[int, ...]
    local_only_lengths: frozenset[int]
    # possible length -> one pattern matching any number type of that length (UNKNOWN when none does)
    typed: dict[int, re.Pattern]
    international_prefix: re.Pattern | None
    national_prefix: re.Pattern | None
    has_transform_rule: bool

    @classmethod
    def compile(cls, region: str) -> _Region | None:
        meta = PhoneMetadata.metadata_for_region(region, None)
        if meta is None:
            return None
        general = meta.general_desc
        lengths = tuple(general.possible_length)
        typed = {}
        for length in lengths:
            patterns = []
            for name in _TYPE_DESCS:
                desc = getattr(meta, name)
                if desc is None or not desc.national_number_pattern:
                    continue
                if desc.possible_length and length not in desc.possible_length:
                    continue
                patterns.append(f"(?:{desc.national_number_pattern})")
            if patterns:
                typed[length] = re.compile("|".join(patterns))
        return cls(
            code=region,
            country_code=str(meta.country_code),
            leading_digits=re.compile(meta.leading_digits) if meta.leading_digits else None,
            general=re.compile(general.national_number_pattern) if general.national_number_pattern else None,
            general_lengths=lengths,
            local_only_lengths=frozenset(general.possible_length_local_only),
            typed=typed,
            international_prefix=re.compile(meta.international_prefix) if meta.international_prefix else None,
            national_prefix=re.compile(meta.national_prefix_for_parsing) if meta.national_prefix_for_parsing else None,
            has_transform_rule=bool(meta.national_prefix_transform_rule),
        )

    def matches_general(self, digits: str) -> bool:
        return self.general is not None and self.general.fullmatch(digits) is not None

    def is_valid(self, nsn: str) -> bool:
        """`_number_type_helper(nsn) != UNKNOWN`: the general pattern and length, then any type of that length."""
        if len(nsn) not in self.general_lengths or not self.matches_general(nsn):
            return False
        typed = self.typed.get(len(nsn))
        return typed is not None and typed.fullmatch(nsn) is not None

    def too_long(self, digits: str) -> bool:
        """`_test_number_length(...) == TOO_LONG` (local-only lengths are never the longest)."""
        return len(digits) not in self.local_only_lengths and len(digits) > self.general_lengths[-1]

    def length_keeps_stripped(self, digits: str) -> bool:
        """`_test_number_length(...)` is neither TOO_SHORT, IS_POSSIBLE_LOCAL_ONLY nor INVALID_LENGTH."""
        length = len(digits)
        if length in self.local_only_lengths:
            return False
        return length in self.general_lengths or length > self.general_lengths[-1]

    def strip_national_prefix(self, digits: str) -> str | None:
        """`_maybe_strip_national_prefix_carrier_code` without a transform rule; None when it would transform."""
        if not digits or self.national_prefix is None:
            return digits
        match = self.national_prefix.match(digits)
        if match is None:
            return digits
        if self.has_transform_rule:
            return None
        rest = digits[match.end() :]
        if self.matches_general(digits) and not self.matches_general(rest):
            return digits
        return rest


class PhoneNormalizer:
    """`normalize(raw)` gives what `campaigns.normalize.normalize_phone(raw, region)` gives, faster for the usual
    shapes; `fast_hits` counts the numbers it settled without the library (the benchmark and the proof read it)."""

    def __init__(self, region: str):
        self.region = region
        self.home = _Region.compile(region) if region else None
        # A number is the region's own only when its country code maps back to this region first, as
        # `parse` switches metadata otherwise; several regions sharing a code are told apart as the library does.
        regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(int(self.home.country_code), ()) if self.home else ()
        usable = self.home is not None and regions and regions[0] == region
        self.sharing = [r for r in (_compiled(code) for code in regions) if r is not None] if usable else []
        self.enabled = bool(usable) and all(r is not None for r in self.sharing)
        self.fast_hits = 0

    def normalize(self, raw: object) -> str:
        if self.enabled and isinstance(raw, str):
            text = raw.strip()
            if text.endswith(".0") and text[:-2].isdigit():
                text = text[:-2]
            if len(text) <= _MAX_INPUT:
                match = _SIMPLE.fullmatch(text)
                if match:
                    e164 = self._fast(bool(match.group(1)), match.group(2).translate(_SEPARATORS))
                    if e164 is not None:
                        self.fast_hits += 1
                        return e164
        return normalize_phone(raw, self.region)

    __call__ = normalize

    def _fast(self, plus: bool, digits: str) -> str | None:
        """The E.164 form when the library would accept the number as the home country's; None to ask it."""
        home = self.home
        code = home.country_code
        national: str | None
        if plus:
            national = self._after_country_code(digits)
        else:
            idd = home.international_prefix.match(digits) if home.international_prefix else None
            if idd is not None and digits[idd.end() : idd.end() + 1] not in ("0", ""):
                national = self._after_country_code(digits[idd.end() :])
            elif digits.startswith(code):
                national = digits
                stripped = home.strip_national_prefix(digits[len(code) :])
                if stripped is None:
                    return None
                if (not home.matches_general(digits) and home.matches_general(stripped)) or home.too_long(digits):
                    national = stripped
            else:
                national = digits
        if national is None or len(national) < _MIN_NSN:
            return None
        stripped = home.strip_national_prefix(national)
        if stripped is None:
            return None
        if home.length_keeps_stripped(stripped):
            national = stripped
        if not (_MIN_NSN <= len(national) <= _MAX_NSN):
            return None
        return f"+{code}{national}" if self._is_valid(national) else None

    def _after_country_code(self, digits: str) -> str | None:
        """After a + or the international prefix: the rest when the country code is the home one."""
        code = self.home.country_code
        if len(digits) <= _MIN_NSN or not digits.startswith(code):
            return None
        # `_extract_country_code` takes the shortest known code; a shorter one would be another country.
        for size in range(1, len(code)):
            if int(digits[:size]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
                return None
        return digits[len(code) :]

    def _is_valid(self, nsn: str) -> bool:
        """`is_valid_number`: the region the number belongs to (by leading digits, else by type), then its types."""
        if len(self.sharing) == 1:
            return self.home.is_valid(nsn)
        for region in self.sharing:
            if region.leading_digits is not None:
                if region.leading_digits.match(nsn):
                    return region.is_valid(nsn)
            elif region.is_valid(nsn):
                return True
        return False


@lru_cache(maxsize=64)
def _compiled(region: str) -> _Region | None:
    return _Region.compile(region)


@lru_cache(maxsize=16)
def phone_normalizer(region: str) -> PhoneNormalizer:
    """One normaliser per region for a process (compiling a region's patterns takes a few milliseconds)."""
    return PhoneNormalizer(region)
