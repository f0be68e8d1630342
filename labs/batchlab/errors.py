"""The unified error structure of the course: ``{"error": {code, message, details, hints}}``.

Every command of the kit reports bad input the same way the course's API does
(the lesson's "400" case): a stable machine-readable ``code``, a sentence for a
person, ``details`` that point at the offending part, and ``hints`` that say what
to do next. Commands print ``to_dict()`` as JSON and exit with ``EXIT_BAD_INPUT``.
"""

from __future__ import annotations

import json
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


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
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2)


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

