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


#: What to do instead, by the batch's state, when an action does not fit it.
_NEXT = {"running": "Wait for it to end, or cancel it first.", "queued": "It starts when a slot is free.",
         "interrupted": "POST /batches/{id}/resume continues it.",
         "cancelled": "POST /batches/{id}/resume continues it.", "completed": "Nothing is left to do.",
         "failed": "POST /batches/{id}/retry-failed runs it again."}


def state_conflict(batch_id: str, state: str, action: str, why: str) -> StateConflict:
    """The 409 of ``action`` on a batch in ``state``, with what the client can do instead."""
    return StateConflict(f"cannot {action} batch {batch_id}: it is {state}; {why}",
                         details={"batch_id": batch_id, "state": state, "action": action},
                         hints=[_NEXT[state].replace("{id}", batch_id)])
