"""PURE: numbers, flags and digests from a remote script's JSON output, parsed as hostile input.

A host (a controller, a restore target) prints what its scripts print, or whatever a compromised host
wants: `1e999` (JSON decodes it to inf, and int(inf) raises OverflowError), `-5`, `"12 "`, `true`,
`"²"` (str.isdigit() says yes, int() says no), a size of 2^70. Each value is parsed here to a typed
value within its bounds, or refused with HostileOutputError (exit 8: the output did not verify),
never with a bare int() that ends as "internal error" or a size no file has.
"""

from __future__ import annotations

import math
import re
from typing import Any

from jujubackup.errors import VerifyError

MAX_INT64 = 2**63 - 1  # Juju's and MongoDB's int64; no file, port or pid is larger
_DIGITS = re.compile(r"[0-9]{1,19}", re.ASCII)
_SHA256 = re.compile(r"[0-9a-f]{64}", re.ASCII)
_MISSING = object()


class HostileOutputError(VerifyError):
    """A remote step printed a value its script never prints (exit 8)."""

    def __init__(self, what: str, value: Any, expected: str, host: str = "") -> None:
        where = f" on {host}" if host else ""
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        super().__init__(
            f"{what}{where} is {shown}, not {expected}",
            hint="the host printed what jujubackup's script never prints: check the host (is it the "
            "machine you meant, is it compromised?) before trusting anything it says",
        )


def remote_int(value: Any, what: str, *, host: str = "", lo: int = 0, hi: int = MAX_INT64,
               default: Any = _MISSING) -> int:
    """Given a value from a remote JSON document, return it as an int in lo..hi: a JSON integer, an
    integral finite float (mongo shells print 1.0), a string of ASCII digits, or a NumberLong as the
    mongo shell or extended JSON writes it. None (absent) gives
    `default` when one is given. Raise HostileOutputError otherwise (bool, inf, nan, a fraction,
    other text, out of bounds)."""
    if value is None and default is not _MISSING:
        return int(default)
    if isinstance(value, dict) and len(value) >= 1:
        # an int64 as the mongo shell's JSON.stringify prints a NumberLong ({"floatApprox": N}, with
        # "top"/"bottom" past 2^53) or as extended JSON ({"$numberLong": "N"})
        inner = value.get("floatApprox", value.get("$numberLong", value.get("$numberInt")))
        if inner is not None and not isinstance(inner, dict):
            return remote_int(inner, what, host=host, lo=lo, hi=hi)
    number: int | None = None
    integral = isinstance(value, float) and math.isfinite(value) and value.is_integer()
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif integral or (isinstance(value, str) and _DIGITS.fullmatch(value)):
        number = int(value)
    if number is None or not lo <= number <= hi:
        raise HostileOutputError(what, value, f"an integer in {lo}..{hi}", host)
    return number


def remote_bool(value: Any, what: str, *, host: str = "") -> bool:
    """Given a value from a remote JSON document, return it if it is a JSON boolean. Raise
    HostileOutputError otherwise ("false" is a true string, 0 is no flag our scripts print)."""
    if not isinstance(value, bool):
        raise HostileOutputError(what, value, "true or false", host)
    return value


def remote_sha256(value: Any, what: str, *, host: str = "", empty: bool = False) -> str:
    """Given a value from a remote JSON document, return it if it is 64 lowercase hex digits (or ''
    when `empty` allows none). Raise HostileOutputError otherwise."""
    if isinstance(value, str) and (_SHA256.fullmatch(value) or (empty and value == "")):
        return value
    raise HostileOutputError(what, value, "a SHA-256 (64 lowercase hex digits)", host)
