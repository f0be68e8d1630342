"""The service's errors: the kit's unified error structure, each with the HTTP status it answers with.

A :class:`batchlab.errors.KitError` that reaches the HTTP layer answers 400 (the
client's bad input, as on the command line), except the codes in
:data:`TOO_LARGE` (413); the classes here carry their own status.
"""

from __future__ import annotations

from ..errors import KitError

#: Codes of a refusal because of size: HTTP 413 Payload Too Large.
TOO_LARGE = frozenset({"document_too_large", "batch_too_large", "request_too_large"})


class ServiceKitError(KitError):
    """A KitError with its HTTP status."""

    status = 400


class BatchNotFound(ServiceKitError):
    default_code = "batch_not_found"
    status = 404


class StateConflict(ServiceKitError):
    """An action that does not fit the batch's state (resume a running batch): 409."""

    default_code = "state_conflict"
    status = 409


class RequestTooLarge(ServiceKitError):
    default_code = "request_too_large"
    status = 413


def http_status(exc: KitError) -> int:
    """The status a KitError answers with."""
    if isinstance(exc, ServiceKitError):
        return exc.status
    if exc.code == "run_dir_busy":
        return 409
    return 413 if exc.code in TOO_LARGE else 400
