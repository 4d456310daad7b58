"""The fast phone normaliser gives exactly what `phonenumbers` gives (campaigns.normalize.normalize_phone) on a
large generated sample of the shapes lead files hold, and settles the usual shapes without the library."""

import random

import phonenumbers
import pytest

from campaigns.importing.phones import PhoneNormalizer
from campaigns.normalize import PhoneError, normalize_phone

SAMPLE = 200_000
REGIONS = {"IN": 0.7, "GB": 0.1, "US": 0.1, "AE": 0.1}
_TYPES = [
    phonenumbers.PhoneNumberType.MOBILE,
    phonenumbers.PhoneNumberType.FIXED_LINE,
    phonenumbers.PhoneNumberType.TOLL_FREE,
    phonenumbers.PhoneNumberType.PREMIUM_RATE,
    phonenumbers.PhoneNumberType.VOIP,
    phonenumbers.PhoneNumberType.UAN,
]


def _examples(region: str) -> list[str]:
    """National significant numbers of every type the library has an example of, for this region and a few others."""
    found = []
    for code in (region, "IN", "GB", "US", "AE", "DE", "SG", "GG", "JE", "CA"):
        for kind in _TYPES:
            number = phonenumbers.example_number_for_type(code, kind)
            if number is not None:
                found.append((number.country_code, phonenumbers.national_significant_number(number)))
    return found


def _mutate(rng: random.Random, nsn: str) -> str:
    """Keep the leading digits (the type), randomise the rest, sometimes change the length."""
    keep = rng.randint(1, min(4, len(nsn)))
    body = nsn[:keep] + "".join(rng.choice("0123456789") for _ in nsn[keep:])
    draw = rng.random()
    if draw < 0.05:
        return body[:-1]
    if draw < 0.1:
        return body + rng.choice("0123456789")
    return body


def _separated(rng: random.Random, digits: str) -> str:
    style = rng.random()
    if style < 0.4:
        return digits
    seps = rng.choice([" ", "-", ".", "  ", " - ", "/", ")", "(", "\u00a0", ""])
    out = []
    for i, ch in enumerate(digits):
        if i and rng.random() < 0.25:
            out.append(seps if rng.random() < 0.9 else rng.choice(" -.()"))
        out.append(ch)
    text = "".join(out)
    if rng.random() < 0.05:
        text = f"({text[:3]}) {text[3:]}"
    return text


def _shape(rng: random.Random, code: int, nsn: str) -> str:
    own = str(code)
    prefix = rng.choice(
        ["", "", "", "0", own, f"+{own}", f"+{own} ", f"00{own}", f"00 {own}", f"{own}0", f"+{own}0", "+", "00",
         "p:", f"p:+{own}", f"p:{own}", "(+" + own + ") ", f"+{own} (0) ", "011", "1", "+1", "+44", "0044", "+91",
         "+971", "tel:", "Mob: "]
    )  # fmt: skip
    text = prefix + _separated(rng, nsn)
    draw = rng.random()
    if draw < 0.03:
        text += ".0"
    elif draw < 0.04:
        text += rng.choice([" ext 12", " x5", "#", ";ext=3", " / 98765 43210", "abc", " ", "\t"])
    elif draw < 0.05:
        text = rng.choice(["  ", "", "n/a", "NULL", "-", "0", "+", "p:", "१२३४५६७८९०", "٩٨٧٦٥٤٣٢١٠", "0123456789"])
    elif draw < 0.06:
        text = "".join(rng.choice("0123456789+-() .p:x") for _ in range(rng.randint(1, 25)))
    elif draw < 0.065:
        text = "9" * rng.randint(15, 40)
    return text


def _sample(region: str, size: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    examples = _examples(region)
    sample = []
    for _ in range(size):
        if rng.random() < 0.2:
            code, nsn = (
                phonenumbers.country_code_for_region(region),
                "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 15))),
            )
        else:
            code, nsn = rng.choice(examples)
            nsn = _mutate(rng, nsn)
        sample.append(_shape(rng, code, nsn))
    return sample


def _outcome(normalize, text):
    try:
        return ("accepted", normalize(text))
    except PhoneError as exc:
        return ("refused", str(exc))


@pytest.mark.parametrize("region", sorted(REGIONS))
def test_fast_normaliser_agrees_with_phonenumbers_on_a_generated_sample(region):
    size = int(SAMPLE * REGIONS[region])
    normalizer = PhoneNormalizer(region)
    disagreements = []
    accepted = 0
    for text in _sample(region, size, seed=sum(map(ord, region))):
        expected = _outcome(lambda t: normalize_phone(t, region), text)
        got = _outcome(normalizer.normalize, text)
        accepted += expected[0] == "accepted"
        if got != expected:
            disagreements.append((text, expected, got))
    assert disagreements[:10] == []
    # The sample exercises both answers, and the fast path settles a good part of it (the rest are other
    # countries' numbers and odd shapes, the library's).
    assert size * 0.15 < accepted < size * 0.95
    assert normalizer.fast_hits > accepted * 0.2


def test_home_numbers_in_the_usual_shapes_never_need_the_library():
    rng = random.Random(12)
    normalizer = PhoneNormalizer("IN")
    shapes = ["{n}", "0{n}", "91{n}", "+91{n}", "+91 {a} {b}", "0091 {n}", "p:+91{n}", "(+91) {a}-{b}", "{a}.{b}"]
    for _ in range(20_000):
        n = rng.choice("6789") + "".join(rng.choice("0123456789") for _ in range(9))
        text = rng.choice(shapes).format(n=n, a=n[:5], b=n[5:])
        assert normalizer.normalize(text) == normalize_phone(text, "IN") == f"+91{n}"
    assert normalizer.fast_hits == 20_000


@pytest.mark.parametrize(
    "text, expected",
    [
        ("9876543210", "+919876543210"),
        ("09876543210", "+919876543210"),
        ("919876543210", "+919876543210"),
        ("+91 98765 43210", "+919876543210"),
        ("0091-98765-43210", "+919876543210"),
        ("p:+919876543210", "+919876543210"),
        ("(022) 2345 6789", "+912223456789"),
        ("98765.43210", "+919876543210"),
        ("9876543210.0", "+919876543210"),
    ],
)
def test_usual_indian_shapes_are_settled_without_the_library(text, expected):
    normalizer = PhoneNormalizer("IN")
    assert normalizer.normalize(text) == expected == normalize_phone(text, "IN")
    assert normalizer.fast_hits == 1


@pytest.mark.parametrize("text", ["+1 415 555 2671", "+91 98765 4321", "98765 ext 43210", "", "n/a"])
def test_other_shapes_get_the_library_answer(text):
    assert _outcome(PhoneNormalizer("IN").normalize, text) == _outcome(lambda t: normalize_phone(t, "IN"), text)


def test_non_text_cells_get_the_library_answer():
    assert PhoneNormalizer("IN").normalize(9876543210) == "+919876543210"
    with pytest.raises(PhoneError):
        PhoneNormalizer("IN").normalize(None)
