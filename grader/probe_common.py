"""What every probe check shares: telling the student's errors from the grader's, and reading their values.

A probe check (:mod:`grader.probe`) calls into the implementation only inside
:func:`student_code`, so that anything raised there is reported as the student's
error and anything raised elsewhere as the grader's. The student's values
(checkpoint entries, results) are read by shape, as plain data, because a
student may return a dataclass, a named tuple or a mapping.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from batchlab.remote import Channel


def harness_channel(args: dict[str, Any]) -> Channel:
    """The probe's end of its step harness's socket (``harness_fd``, :mod:`grader.stepharness`): the service,
    the sink and the ledger live in the grader's process; the probe only hands the processor their proxies."""
    fd = args.get("harness_fd")
    if not isinstance(fd, int):
        raise RuntimeError("this probe check needs its harness: started without harness_fd")
    return Channel(fd)


class StudentCodeError(Exception):
    """Wraps an exception that escaped the student's code (as opposed to a bug of this probe)."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(str(exc))
        self.original = exc


@contextlib.contextmanager
def student_code() -> Iterator[None]:
    """Everything raised inside this block is the implementation's doing, not the grader's."""
    try:
        yield
    except StudentCodeError:
        raise
    except BaseException as exc:  # noqa: BLE001 - SystemExit and KeyboardInterrupt from student code too
        raise StudentCodeError(exc) from exc


def need(module: Any, name: str) -> Any:
    """The attribute ``name`` of the implementation, or a student error naming what is missing."""
    value = getattr(module, name, None)
    if value is None:
        raise StudentCodeError(AttributeError(f"the module has no `{name}` (see the module docstring)"))
    return value


def describe(exc: BaseException, module: Any = None) -> dict[str, Any]:
    """An exception the student's code raised, as the facts the parent judges (is it the expected kind?)."""
    illegal = getattr(module, "IllegalTransition", None) if module is not None else None
    return {
        "type": type(exc).__name__,
        "message": str(exc)[:800],
        "is_value_error": isinstance(exc, ValueError),
        "is_illegal_transition": bool(isinstance(illegal, type) and isinstance(exc, illegal)),
        "is_todo": isinstance(exc, NotImplementedError),
    }


def entry_dict(entry: Any) -> dict[str, Any] | None:
    """A checkpoint entry as plain data, whether the student returns a dataclass or a mapping."""
    if entry is None:
        return None

    def field(name: str) -> Any:
        if isinstance(entry, dict):
            return entry.get(name)
        return getattr(entry, name, None)

    attempts = field("attempts")
    return {"state": None if field("state") is None else str(field("state")),
            "attempts": attempts if isinstance(attempts, int) else None,
            "last_error": None if field("last_error") is None else str(field("last_error")),
            "doc_id": None if field("doc_id") is None else str(field("doc_id"))}


def entries_dict(store: Any) -> dict[str, dict[str, Any] | None]:
    """Every entry of a student's store (``store.entries()``), as plain data by key."""
    return {str(k): entry_dict(v) for k, v in dict(store.entries()).items()}
