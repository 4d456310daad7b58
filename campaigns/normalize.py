"""Phone numbers and names as CloudAgent accepts them; shared by the import and the push."""

import re
from functools import lru_cache

import phonenumbers
from unidecode import unidecode

from campaigns.models import PhoneFormat
from cloudagent.rules import NAME_ACCEPTED, NAME_REFUSED

_SPACES = re.compile(r"\s+")


class PhoneError(ValueError):
    """The value is not a dialable phone number; the message says why, for the operator."""


def normalize_phone(raw: object, region: str) -> str:
    """Parse a number as people write it (spaces, dashes, brackets, 0 / 91 / 0091 / +91 prefixes) into E.164."""
    text = str(raw if raw is not None else "").strip()
    if text.endswith(".0") and text[:-2].isdigit():  # a number that went through a spreadsheet cell
        text = text[:-2]
    if not text:
        raise PhoneError("phone number is empty")
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise PhoneError(f"'{text}' is not a phone number") from exc
    if not phonenumbers.is_valid_number(number):
        raise PhoneError(f"'{text}' is not a valid number for region {region}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@lru_cache(maxsize=64)
def _country_code_for(region: str) -> str:
    return str(phonenumbers.country_code_for_region(region))


def format_phone(e164: str, region: str, phone_format: str) -> str:
    """The number in the form the campaign sends it: national digits for numbers of the campaign's own country."""
    if phone_format == PhoneFormat.E164:
        return e164
    digits = e164.lstrip("+")
    if phone_format == PhoneFormat.NATIONAL:
        code = _country_code_for(region)
        if digits.startswith(code):
            return digits[len(code) :]
    return digits


def clean_name(raw: object) -> tuple[str, bool]:
    """Fold accents to ASCII and drop the characters CloudAgent refuses; returns (name, changed)."""
    # A name already in CloudAgent's alphabet comes out unchanged: most names in a lead file are, and skipping
    # unidecode for them keeps the import fast.
    if isinstance(raw, str) and NAME_ACCEPTED.fullmatch(raw):
        return raw, False
    text = _SPACES.sub(" ", str(raw if raw is not None else "")).strip()
    cleaned = _SPACES.sub(" ", NAME_REFUSED.sub("", unidecode(text))).strip()
    return cleaned, cleaned != text
