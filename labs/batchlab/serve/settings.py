"""A client's settings for a batch, checked the way the CLI checks its options; and the hints per failure reason.

Settings arrive as query parameters, form fields (strings) or JSON (numbers):
:func:`parse_settings` takes any of them and answers a bad one with the unified
error (``invalid_setting``, HTTP 400), before anything is created.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..errors import KitError
from ..faults import CRASH_AFTER_COMMIT, CRASH_DURING_CALL, CRASH_KINDS
from .store import Settings

#: The largest request body the service reads (a batch file); larger ones answer 413.
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
MAX_CONCURRENCY = 256


def _bad(name: str, value: Any, why: str, hint: str) -> KitError:
    return KitError(f"setting `{name}`: {why}", code="invalid_setting", details={"setting": name, "value": value},
                    hints=[hint])


def _number(name: str, value: Any, kind: type, lo: float, hi: float, hint: str) -> Any:
    if isinstance(value, bool):
        raise _bad(name, value, "a boolean is not a number", hint)
    try:
        number = kind(value)
    except (TypeError, ValueError, OverflowError):
        raise _bad(name, value, f"{value!r} is not {'an integer' if kind is int else 'a number'}", hint) from None
    if kind is int and isinstance(value, float) and not value.is_integer():
        raise _bad(name, value, f"{value!r} is not an integer", hint)
    if isinstance(number, float) and not math.isfinite(number) or not lo <= number <= hi:
        raise _bad(name, value, f"{value!r} is outside [{lo:g}, {hi:g}]", hint)
    return number


def parse_settings(raw: Mapping[str, Any]) -> Settings:
    """:class:`Settings` from a client's values (strings or numbers); ``None`` or ``""`` keeps the default."""
    given = {k: v for k, v in raw.items() if v is not None and v != ""}
    unknown = sorted(set(given) - set(Settings.__dataclass_fields__))
    if unknown:
        raise KitError(f"unknown setting(s): {', '.join(unknown)}", code="unknown_setting",
                       details={"unknown": unknown, "known": sorted(Settings.__dataclass_fields__)},
                       hints=["Settings: fault_rate, seed, concurrency, crash, at, latency_ms."])
    s = Settings()
    if "fault_rate" in given:
        s.fault_rate = _number("fault_rate", given["fault_rate"], float, 0.0, 1.0,
                               "A rate in [0, 1]: 3 % is 0.03 (the lesson uses 0.01-0.05).")
    if "seed" in given:
        s.seed = _number("seed", given["seed"], int, -(2**63), 2**63 - 1, "Any integer; the same seed replays "
                         "the same faults.")
    if "concurrency" in given:
        s.concurrency = _number("concurrency", given["concurrency"], int, 1, MAX_CONCURRENCY,
                                f"An integer from 1 to {MAX_CONCURRENCY}.")
    if "latency_ms" in given:
        s.latency_ms = _number("latency_ms", given["latency_ms"], float, 0.0, 10_000.0,
                               "The median service latency in milliseconds (default 10).")
    if "crash" in given:
        if given["crash"] not in CRASH_KINDS:
            raise _bad("crash", given["crash"], f"not one of {', '.join(CRASH_KINDS)}",
                       "during_call or after_commit kill the first pass at the K-th call or commit (`at`).")
        s.crash = str(given["crash"])
    if "at" in given:
        s.at = _number("at", given["at"], int, 0, 10**9, "The K-th call or commit of the first pass (from 1).")
    if s.crash in (CRASH_DURING_CALL, CRASH_AFTER_COMMIT) and s.at == 0:
        s.at = 1
    return s


#: Hints per failure reason of the service's own faults (rejected inputs carry their own hints).
REASON_HINTS = {
    "timeout": "Transient: the call timed out. The processor retries it with backoff; it costs nothing unless "
               "the retries run out.",
    "unavailable_503": "Transient: the service answered 503. Retried with backoff (and jitter, so that clients "
                       "do not retry together).",
    "parse_error": "Permanent for this document: retrying cannot help; the degraded path commits it as degraded.",
    "malformed_response": "A poison document: the answer cannot be decoded. The processor must end it failed and "
                          "go on; retry-failed gives it another pass.",
}


def hint_for(reason: str) -> str:
    if reason in REASON_HINTS:
        return REASON_HINTS[reason]
    if reason.startswith("unexpected:"):
        return ("The processor caught an unexpected exception for this document: see last_error in "
                "GET /batches/{id}/documents?state=failed.")
    return "See the documents with this error: GET /batches/{id}/documents?state=failed."
