"""JSON text that comes from outside (a callback, a call summary, a lead file), read safely: its nesting is measured
before json.loads recurses into it (the C decoder recurses per level, and ten thousand "[" end in RecursionError),
and the values no database JSON column stores (NaN, Infinity, numbers out of range) are refused while it parses."""

import math
import re
from itertools import accumulate

# A JSON string, or an unterminated one to the end of the text: one linear pass, never a second try per quote.
_JSON_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def json_depth(text: str) -> int:
    """The deepest bracket nesting outside strings, in C-speed passes (regex, map, accumulate)."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0)


def finite_float(text: str) -> float:
    """json.loads' parse_float: 1e400 parses as infinity, which no database column stores."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def refuse_constant(name: str):
    """json.loads' parse_constant: it accepts NaN and Infinity; PostgreSQL's jsonb does not."""
    raise ValueError(f"{name} is not a JSON value")
