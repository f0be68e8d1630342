"""The unified error structure of the course: ``{"error": {code, message, details, hints}}``.

Every command of the kit reports bad input the same way the course's API does
(the lesson's "400" case): a stable machine-readable ``code``, a sentence for a
person, ``details`` that point at the offending part, and ``hints`` that say what
to do next. Commands print ``to_dict()`` as JSON and exit with ``EXIT_BAD_INPUT``.
"""

from __future__ import annotations

import json
import math
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

#: An echoed string (a batch id, a path, a field list) is cut to this many characters in ``to_json``:
#: a 1 MB batch id must not become 2 MB of error output.
MAX_ECHO_CHARS = 300
#: The message and each hint are sentences that may quote a value: cut them too, a little later.
MAX_MESSAGE_CHARS = 1000
#: An echoed integer with more bits than this is described, never printed (``str`` refuses > 4300 digits).
MAX_ECHO_INT_BITS = 1024
#: Deeper structures in ``details`` are cut (a pathological input must not make the error recurse).
MAX_ECHO_DEPTH = 20


class KitError(Exception):
    """An error that carries the unified error structure."""

    default_code = "kit_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        hints: list[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code or self.default_code
        self.message = message
        self.details = dict(details or {})
        self.hints = list(hints or [])

    def to_dict(self) -> dict[str, Any]:
        """The unified error structure, ready for ``json.dumps``."""
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "details": self.details,
                "hints": self.hints,
            }
        }

    def to_json(self) -> str:
        """The unified structure as strict JSON (RFC 8259), safe to print on any terminal.

        Echoed values are made printable first (:func:`printable`): strings cut to
        :data:`MAX_ECHO_CHARS` and lone surrogates escaped, NaN and Infinity shown
        as strings, huge integers described. ``allow_nan=False`` proves the rest.
        """
        body = {"error": {
            "code": printable_str(str(self.code)),
            "message": printable_str(str(self.message), MAX_MESSAGE_CHARS),
            "details": printable(self.details),
            "hints": [printable_str(str(h), MAX_MESSAGE_CHARS) for h in self.hints],
        }}
        return json.dumps(body, ensure_ascii=False, indent=2, allow_nan=False)


def finite(value: Any) -> Any:
    """``value`` with NaN and Infinity replaced by their names as strings (nothing cut): strict JSON can hold it."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def strict_json(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` for a command's output: strict JSON (RFC 8259), non-finite numbers as strings."""
    return json.dumps(finite(value), allow_nan=False, **kwargs)


def printable_str(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    """``text`` cut to ``limit`` characters (saying how much was cut), lone surrogates as ``\\udXXX``."""
    cut = len(text) - limit
    if cut > 0:
        text = text[:limit]
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\ud800" in JSON): valid grammar, not valid Unicode
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text + (f"... [{cut} more characters]" if cut > 0 else "")


def printable(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` that strict JSON can encode and a terminal can print (see ``to_json``)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return printable_str(value)
    if isinstance(value, int):
        if value.bit_length() > MAX_ECHO_INT_BITS:
            return f"<an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits>"
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if depth >= MAX_ECHO_DEPTH:
        return f"<{type(value).__name__} nested deeper than {MAX_ECHO_DEPTH} levels>"
    if isinstance(value, dict):
        items = list(value.items())
        out = {printable_str(str(k) if not isinstance(k, str) else k): printable(v, depth + 1)
               for k, v in items[:50]}
        if len(items) > 50:
            out["..."] = f"{len(items) - 50} more entries"
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        seq = list(value)
        out_list = [printable(v, depth + 1) for v in seq[:50]]
        if len(seq) > 50:
            out_list.append(f"... {len(seq) - 50} more items")
        return out_list
    return printable_str(repr(value) if isinstance(value, bytes) else str(value))


class BatchInputError(KitError):
    """The batch as a whole cannot be accepted (the lesson's 400: missing or malformed input).

    Raised before any document is processed, so nothing of earlier runs is touched.
    """

    default_code = "invalid_batch"


class InvalidDocumentError(KitError):
    """One document is invalid; the batch goes on and the document ends ``failed``.

    ``code`` classifies the reason (``missing_id``, ``empty_content`` ...) so that
    failure reasons can be counted.
    """

    default_code = "invalid_document"


class UsageError(KitError):
    """A command was called with arguments that do not fit (missing file, bad option)."""

    default_code = "usage_error"

