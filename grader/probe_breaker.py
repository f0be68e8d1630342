"""Probe checks of the circuit breaker (step 03) and the per-call deadline (step 04).

``check_breaker`` drives the student's ``CircuitBreaker(config, clock=...)`` through
a fixed script with an injected clock (no real time passes): calls that fail,
succeed or hang until released, and records, for each, whether the breaker made
the call, what came out and the state after. The parent judges the records.

``check_deadline`` runs ``process_document`` through ``run_bounded`` with one slot
on documents whose first call of every chunk hangs (the harness's stuck calls), so
that a processor without a deadline stalls; an outer guard ends the probe and says so. Its
service lives in the grader's process (:mod:`grader.stepharness`), which records every call
and every cancellation; this probe hands the processor the proxy.
"""

from __future__ import annotations

import asyncio
from typing import Any

from batchlab.contract import BatchConfig
from batchlab.documents import Document, parse_document
from batchlab.remote import RemoteService
from batchlab.service import PermanentServiceError, TransientServiceError
from batchlab.testing import FakeClock, RecordingSleep

from .probe_batch import summarize_result
from .probe_common import StudentCodeError, harness_channel, need, student_code

#: The breaker script's settings: opens after 3 consecutive failures, cool-down 10 s (of the fake clock).
BREAKER_CONFIG = {"breaker_failures": 3, "breaker_cooldown": 10.0, "breaker_max_wait": 60.0}


def _state(breaker: Any) -> str:
    """The breaker's state as text (``closed``/``open``/``half_open``), whatever the student's type."""
    with student_code():
        state = breaker.state
    state = getattr(state, "value", state)
    return str(state).lower().replace("-", "_").rsplit(".", 1)[-1]


class Script:
    """Runs one call at a time through the student's breaker and records what happened."""

    def __init__(self, breaker: Any, clock: FakeClock) -> None:
        self.breaker, self.clock = breaker, clock
        self.records: list[dict[str, Any]] = []

    async def call(self, step: str, outcome: str, release: asyncio.Event | None = None) -> dict[str, Any]:
        """One call whose function would end ``outcome`` (ok / transient / permanent), or wait for ``release``."""
        made = {"called": False}
        raised: list[BaseException] = []

        async def fn() -> str:
            made["called"] = True
            if release is not None:
                await release.wait()
            if outcome == "transient":
                raised.append(TransientServiceError("unreachable", "the service is down"))
                raise raised[-1]
            if outcome == "permanent":
                raised.append(PermanentServiceError("parse_error", "cannot parse"))
                raise raised[-1]
            return "ok"

        record: dict[str, Any] = {"step": step, "t": self.clock()}
        try:
            with student_code():
                coro = self.breaker.call(fn)
            result = await coro
            record["outcome"] = "ok" if result == "ok" else f"returned {result!r:.40}"
        except StudentCodeError:
            raise
        except BaseException as exc:  # noqa: BLE001 - a refusal is the student's own exception type
            if any(exc is e for e in raised):
                record["outcome"] = "failed"
            elif not made["called"]:
                retry_after = getattr(exc, "retry_after", None)
                record.update(outcome="refused", error_type=type(exc).__name__,
                              retry_after=float(retry_after) if isinstance(retry_after, (int, float)) else None)
            else:
                raise StudentCodeError(exc) from exc
        record["called"] = made["called"]
        record["state"] = _state(self.breaker)
        self.records.append(record)
        return record

    async def half_open_probe(self) -> None:
        """The cool-down is over: one call hangs (the probe); two more arrive meanwhile; then the probe succeeds."""
        release = asyncio.Event()
        probe = asyncio.ensure_future(self.call("probe", "ok", release))
        for _ in range(5):
            await asyncio.sleep(0)
        await self.call("during_probe_1", "ok")
        await self.call("during_probe_2", "ok")
        release.set()
        await probe
        await self.call("after_close", "ok")


async def _breaker_script(breaker: Any, clock: FakeClock) -> list[dict[str, Any]]:
    s = Script(breaker, clock)
    s.records.append({"step": "new", "state": _state(breaker)})
    for step, outcome in (("c1", "transient"), ("c2", "transient"), ("c3", "ok"), ("c4", "transient"),
                          ("c5", "transient"), ("c6", "permanent"), ("c7", "transient"), ("c8", "transient")):
        await s.call(step, outcome)
    await s.call("opening", "transient")          # the 3rd consecutive transient failure: opens
    await s.call("open_1", "ok")                  # refused at once, retry_after ~10
    clock.advance(4.0)
    await s.call("open_2", "ok")                  # still open, retry_after ~6
    clock.advance(6.0)
    s.records.append({"step": "cooled", "state": _state(breaker)})
    await s.half_open_probe()                     # one probe; closes on success
    for step in ("reopen_1", "reopen_2", "reopen_3"):
        await s.call(step, "transient")
    clock.advance(10.0)
    await s.call("failed_probe", "transient")     # the probe fails: open again, a fresh cool-down
    await s.call("after_failed_probe", "ok")      # refused, retry_after ~10
    clock.advance(10.0)
    await s.call("second_probe", "ok")            # closes
    return s.records


def check_breaker(module: Any, args: dict[str, Any]) -> list[dict[str, Any]]:
    """The breaker script's records (see :func:`_breaker_script`)."""
    breaker_cls = need(module, "CircuitBreaker")
    clock = FakeClock(1000.0)
    config = BatchConfig(**{**BREAKER_CONFIG, **args.get("config", {})})
    with student_code():
        breaker = breaker_cls(config, clock=clock)
    return asyncio.run(_breaker_script(breaker, clock))


def check_deadline(module: Any, args: dict[str, Any]) -> dict[str, Any]:
    """``run_bounded(limit=1)`` over ``process_document``: stuck documents first, then ordinary ones.

    ``guard_s`` of real time ends a run that stalls (no deadline): ``stalled`` is then True
    and the results hold only the documents that finished.
    """
    process_document, run_bounded = need(module, "process_document"), need(module, "run_bounded")
    docs = [parse_document(raw) for raw in args["documents"]]
    service = RemoteService(harness_channel(args))
    config = BatchConfig(**args["config"])
    sleep = RecordingSleep()
    results: dict[str, dict[str, Any]] = {}

    async def one(doc: Document) -> None:
        result = await process_document(doc, service=service, config=config, sleep=sleep)
        results[doc.id] = summarize_result(doc, result)

    async def main() -> bool:
        try:
            await asyncio.wait_for(run_bounded(docs, one, limit=1), timeout=float(args["guard_s"]))
        except TimeoutError:
            return True
        return False

    with student_code():
        stalled = asyncio.run(main())
    return {"stalled": stalled, "results": results, "calls": service.calls, "sleeps": sleep.delays}
