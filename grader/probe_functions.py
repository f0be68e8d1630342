"""Probe checks of the step functions that need no batch: the import, keys (02), backoff and retrying (03).

Each check takes ``(module, args)`` and returns JSON-ready facts for the parent to judge.
"""

from __future__ import annotations

import asyncio
from typing import Any

from batchlab.contract import BatchConfig
from batchlab.documents import Document
from batchlab.service import PermanentServiceError, TransientServiceError
from batchlab.testing import RecordingSleep

from .probe_common import StudentCodeError, need, student_code


def check_import(module: Any, args: dict[str, Any]) -> dict[str, Any]:
    """Which of the lesson's names the module defines, and whether the batch entry point is a coroutine."""
    names = ("CheckpointStore", "make_idempotency_key", "backoff_delay", "process_documents_batch")
    return {"names": {name: hasattr(module, name) for name in names},
            "batch_is_async": asyncio.iscoroutinefunction(getattr(module, "process_documents_batch", None))}


def check_keys(module: Any, args: dict[str, Any]) -> list[Any]:
    """The key of each described document (the parent compares them)."""
    make_key = need(module, "make_idempotency_key")
    keys = []
    for spec in args["docs"]:
        doc = Document(id=spec["id"], content=spec["content"], source=spec.get("source", "default"),
                       title=spec.get("title", ""), metadata=spec.get("metadata", {}))
        with student_code():
            key = make_key(doc, spec["layer"]) if "layer" in spec else make_key(doc)
        keys.append(key if isinstance(key, str) else {"not_a_str": type(key).__name__, "repr": repr(key)[:80]})
    return keys


def check_backoff(module: Any, args: dict[str, Any]) -> list[float]:
    """``backoff_delay(attempt, config[, rand])`` for each case."""
    delay = need(module, "backoff_delay")
    out = []
    for case in args["cases"]:
        config = BatchConfig(**case["config"])
        rand = case.get("rand")
        with student_code():
            value = delay(case["attempt"], config) if rand is None else delay(case["attempt"], config,
                                                                               lambda r=rand: r)
        out.append(float(value))
    return out


class FlakyCall:
    """A call that fails ``failures`` times (transient or permanent) and then succeeds; past ``guard`` calls it
    raises a guard error that no retry policy should retry, so that unlimited retries end."""

    def __init__(self, failures: int, error: str, guard: int) -> None:
        self.failures, self.error, self.guard = failures, error, guard
        self.calls = 0
        self.raised: list[BaseException] = []

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls > self.guard:
            exc: BaseException = PermanentServiceError("grader_guard", f"more than {self.guard} calls")
        elif self.calls <= self.failures:
            exc = (TransientServiceError("timeout", f"call {self.calls} timed out") if self.error == "transient"
                   else PermanentServiceError("parse_error", f"call {self.calls}: cannot parse"))
        else:
            return "ok"
        self.raised.append(exc)
        raise exc


def _retry_case(make_retrying: Any, case: dict[str, Any]) -> dict[str, Any]:
    """One case: a fresh retrying object around a fresh :class:`FlakyCall`; what came out and how it waited."""
    config = BatchConfig(**case["config"])
    call = FlakyCall(case["failures"], case["error"], int(case.get("guard", 12)))
    sleep = RecordingSleep(yield_to_loop=False)
    before = 0

    def count_before_sleep(state: Any) -> None:
        nonlocal before
        before += 1

    async def drive() -> str:
        with student_code():
            retrying = make_retrying(config, sleep=sleep, before_sleep=count_before_sleep)
        try:
            async for attempt in retrying:
                with attempt:
                    result = await call()
            return result
        except BaseException as exc:  # noqa: BLE001
            if any(exc is e for e in call.raised) or type(exc).__name__ == "RetryError":
                raise
            raise StudentCodeError(exc) from exc

    outcome: dict[str, Any]
    try:
        outcome = {"result": asyncio.run(drive())}
    except StudentCodeError:
        raise
    except (TransientServiceError, PermanentServiceError) as exc:
        outcome = {"raised": type(exc).__name__, "kind": exc.kind}
    except BaseException as exc:  # noqa: BLE001 - tenacity's RetryError (no reraise=True)
        outcome = {"raised": type(exc).__name__, "kind": None}
    return {**outcome, "calls": call.calls, "sleeps": sleep.delays, "before_sleep": before}


def check_retrying(module: Any, args: dict[str, Any]) -> list[dict[str, Any]]:
    """Drive ``make_retrying(config, sleep=, before_sleep=)`` over calls that fail as each case says.

    Each case gets a fresh retrying object (:func:`_retry_case`). Recorded: calls,
    the waits passed to ``sleep``, how often ``before_sleep`` ran, and what came out.
    """
    make_retrying = need(module, "make_retrying")
    return [_retry_case(make_retrying, case) for case in args["cases"]]
