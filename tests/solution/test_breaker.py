"""The reference's circuit breaker and per-call deadline (issue 10, items 1-2), on the shared doubles.

The breaker runs on a :class:`FakeClock`, so no real time passes; the deadline tests use a
real (short) ``asyncio.timeout`` because that is what cancels a stuck call.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from batchlab.contract import BatchConfig
from batchlab.documents import parse_document
from batchlab.faults import CANCELLED_KIND, OUTAGE_KIND, FaultPlan
from batchlab.ledger import Ledger, read_events
from batchlab.paths import solution_module
from batchlab.service import LatencyModel, PermanentServiceError, SimulatedService, TransientServiceError
from batchlab.sink import SqliteSink
from batchlab.testing import FakeClock, RecordingSleep
from batchlab.worker import load_impl

CONFIG = BatchConfig(breaker_failures=2, breaker_cooldown=5.0)


@pytest.fixture(scope="module")
def ref() -> ModuleType:
    return load_impl(solution_module(), name="reference_breaker")


class Calls:
    """An async function double: each call pops the next outcome ('ok', 'transient', 'permanent')."""

    def __init__(self, *outcomes: str) -> None:
        self.outcomes = list(outcomes)
        self.made = 0

    async def __call__(self) -> str:
        self.made += 1
        outcome = self.outcomes.pop(0)
        if outcome == "transient":
            raise TransientServiceError("unreachable", "down")
        if outcome == "permanent":
            raise PermanentServiceError("parse_error", "bad")
        return outcome


async def outcome(breaker: Any, fn: Calls) -> str:
    try:
        return str(await breaker.call(fn))
    except TransientServiceError:
        return "failed"
    except PermanentServiceError:
        return "permanent"
    except Exception as exc:  # noqa: BLE001 - the refusal
        return type(exc).__name__


class TestCircuitBreaker:
    def test_it_opens_after_consecutive_transient_failures_only(self, ref: ModuleType) -> None:
        """A success or a permanent error resets the count; two transient failures in a row open it."""
        breaker = ref.CircuitBreaker(CONFIG, clock=FakeClock())
        fn = Calls("transient", "ok", "transient", "permanent", "transient", "transient")
        seen = [asyncio.run(outcome(breaker, fn)) for _ in range(6)]
        assert (seen[-1], breaker.state) == ("failed", "open")
        assert fn.made == 6

    def test_while_open_it_refuses_without_calling_and_says_how_long_to_wait(self, ref: ModuleType) -> None:
        """An open breaker raises CircuitOpenError with the rest of the cool-down, and the function is never run."""
        clock = FakeClock()
        breaker = ref.CircuitBreaker(CONFIG, clock=clock)
        for _ in range(2):
            asyncio.run(outcome(breaker, Calls("transient")))
        clock.advance(2.0)
        fn = Calls("ok")
        with pytest.raises(ref.CircuitOpenError) as refused:
            asyncio.run(breaker.call(fn))
        assert (fn.made, refused.value.retry_after) == (0, pytest.approx(3.0))

    def test_half_open_lets_exactly_one_probe_through_and_its_success_closes(self, ref: ModuleType) -> None:
        """After the cool-down one probe runs; a call during it is refused; the probe's success closes the breaker."""
        clock = FakeClock()
        breaker = ref.CircuitBreaker(CONFIG, clock=clock)
        for _ in range(2):
            asyncio.run(outcome(breaker, Calls("transient")))
        clock.advance(5.0)

        async def scenario() -> tuple[str, str, str]:
            release = asyncio.Event()

            async def slow_probe() -> str:
                await release.wait()
                return "ok"

            probe = asyncio.ensure_future(breaker.call(slow_probe))
            await asyncio.sleep(0)
            during = await outcome(breaker, Calls("ok"))
            release.set()
            return during, await probe, breaker.state

        assert asyncio.run(scenario()) == ("CircuitOpenError", "ok", "closed")

    def test_a_failed_probe_opens_it_again_for_a_fresh_cool_down(self, ref: ModuleType) -> None:
        """The probe's transient failure reopens the breaker, counting the cool-down from that moment."""
        clock = FakeClock()
        breaker = ref.CircuitBreaker(CONFIG, clock=clock)
        for _ in range(2):
            asyncio.run(outcome(breaker, Calls("transient")))
        clock.advance(6.0)
        assert asyncio.run(outcome(breaker, Calls("transient"))) == "failed"
        with pytest.raises(ref.CircuitOpenError) as refused:
            asyncio.run(breaker.call(Calls("ok")))
        assert (breaker.state, refused.value.retry_after) == ("open", pytest.approx(5.0))


def docs(n: int, prefix: str = "d") -> list[Any]:
    return [parse_document({"id": f"{prefix}-{i}", "content": f"Short document {i} about retries."})
            for i in range(n)]


class TestProcessDocumentWithBreaker:
    def test_an_open_breaker_is_waited_out_without_spending_attempts(self, ref: ModuleType) -> None:
        """While the breaker is open the document sleeps retry_after, then the probe succeeds: full, not degraded."""
        clock = FakeClock()
        breaker = ref.CircuitBreaker(CONFIG, clock=clock)
        for _ in range(2):
            asyncio.run(outcome(breaker, Calls("transient")))
        sleep = RecordingSleep(clock=clock)
        service = SimulatedService(latency=LatencyModel(median_ms=0), sleep=RecordingSleep())
        result = asyncio.run(ref.process_document(docs(1)[0], service=service, config=CONFIG, sleep=sleep,
                                                  breaker=breaker))
        assert (result.mode, sleep.delays, service.calls, breaker.state) == ("full", [5.0], 1, "closed")

    def test_a_breaker_open_longer_than_max_wait_degrades_the_document(self, ref: ModuleType) -> None:
        """When the waits add up past breaker_max_wait the document takes the degraded path (circuit_open)."""
        clock = FakeClock()
        config = BatchConfig(breaker_failures=1, breaker_cooldown=1.0, breaker_max_wait=3.0)
        breaker = ref.CircuitBreaker(config, clock=clock)
        asyncio.run(outcome(breaker, Calls("transient")))
        service = SimulatedService(plan=FaultPlan(outages=((0.0, 1e9),)), latency=LatencyModel(median_ms=0),
                                   sleep=RecordingSleep(), clock=clock)
        result = asyncio.run(ref.process_document(docs(1)[0], service=service, config=config,
                                                  sleep=RecordingSleep(clock=clock), breaker=breaker))
        assert (result.mode, result.error) == ("degraded", "retries_exhausted:circuit_open")

    def test_a_breaker_open_past_max_wait_degrades_a_newcomer_at_once(self, ref: ModuleType) -> None:
        """The outage's length is the batch's: a document meeting a breaker open for breaker_max_wait waits no more."""
        clock = FakeClock()
        config = BatchConfig(breaker_failures=1, breaker_cooldown=100.0, breaker_max_wait=3.0)
        breaker = ref.CircuitBreaker(config, clock=clock)
        asyncio.run(outcome(breaker, Calls("transient")))
        clock.advance(5.0)
        sleep = RecordingSleep(clock=clock)
        service = SimulatedService(latency=LatencyModel(median_ms=0), sleep=RecordingSleep())
        result = asyncio.run(ref.process_document(docs(1)[0], service=service, config=config, sleep=sleep,
                                                  breaker=breaker))
        assert (result.mode, result.error, sleep.delays, service.calls) == (
            "degraded", "retries_exhausted:circuit_open", [], 0)

    @staticmethod
    def outage_batch(ref: ModuleType, folder: Path, config: BatchConfig, outage: tuple[float, float]) -> tuple[Any, int]:
        """30 documents through the reference's batch in an outage; its report and the calls the service refused."""
        raw = [{"id": f"doc-{i}", "content": f"Document {i}. " * 40} for i in range(30)]
        folder.mkdir()
        ledger = Ledger(folder / "ledger.jsonl", pass_no=1)
        service = SimulatedService(plan=FaultPlan(outages=(outage,)), latency=LatencyModel(median_ms=1), ledger=ledger)
        sink = SqliteSink(folder / "sink.sqlite")
        try:
            report = asyncio.run(ref.process_documents_batch(raw, batch_id="b", service=service, sink=sink,
                                                             state_dir=folder / "state", config=config))
        finally:
            sink.close()
            ledger.close()
        refused = sum(1 for e in read_events(folder / "ledger.jsonl")
                      if e["ev"] == "call_fail" and e.get("error") == OUTAGE_KIND)
        return report, refused

    def test_in_an_endless_outage_the_breaker_saves_most_calls(self, ref: ModuleType, tmp_path: Path) -> None:
        """Without a breaker every document spends max_attempts calls; with one, a few calls open it and the rest wait."""
        forever = (0.0, 1e9)
        off, refused_off = self.outage_batch(ref, tmp_path / "off", BatchConfig(breaker_failures=0), forever)
        on, refused_on = self.outage_batch(ref, tmp_path / "on", BatchConfig(breaker_cooldown=0.2,
                                                                              breaker_max_wait=0.4), forever)
        assert (off.degraded, refused_off) == (30, 30 * BatchConfig().max_attempts)
        assert on.degraded == 30 and on.failure_reasons == {"retries_exhausted:circuit_open": 30}
        assert refused_on < refused_off / 2, (refused_on, refused_off)

    def test_a_short_outage_degrades_nothing_with_the_breaker(self, ref: ModuleType, tmp_path: Path) -> None:
        """An outage shorter than breaker_max_wait is waited out: every document ends done, none degraded."""
        report, refused = self.outage_batch(ref, tmp_path / "on", BatchConfig(breaker_cooldown=0.1), (0.0, 0.3))
        assert (report.done, report.degraded, refused > 0) == (30, 0, True)


class TestDeadline:
    def test_a_stuck_call_is_cancelled_and_retried(self, ref: ModuleType, tmp_path: Path) -> None:
        """A call that never returns is cancelled at call_timeout (the ledger says cancelled) and its retry succeeds."""
        ledger = Ledger(tmp_path / "ledger.jsonl", pass_no=1)
        service = SimulatedService(plan=FaultPlan(stuck_ids=("d-0",)), latency=LatencyModel(median_ms=0),
                                   ledger=ledger)
        config = BatchConfig(call_timeout=0.05)
        result = asyncio.run(ref.process_document(docs(1)[0], service=service, config=config,
                                                  sleep=RecordingSleep()))
        ledger.close()
        cancelled = [e for e in read_events(tmp_path / "ledger.jsonl") if e.get("error") == CANCELLED_KIND]
        assert (result.mode, result.retries, len(cancelled)) == ("full", 1, 1)

    def test_without_a_deadline_a_stuck_call_holds_its_slot(self, ref: ModuleType) -> None:
        """call_timeout=0 means no deadline: the stuck document never finishes and the one slot stays taken."""
        service = SimulatedService(plan=FaultPlan(stuck_ids=("d-0",)), latency=LatencyModel(median_ms=0))
        config = BatchConfig(call_timeout=0.0)
        finished: list[str] = []

        async def one(doc: Any) -> None:
            await ref.process_document(doc, service=service, config=config, sleep=RecordingSleep())
            finished.append(doc.id)

        async def main() -> None:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ref.run_bounded(docs(3), one, limit=1), 0.3)

        asyncio.run(main())
        assert finished == []
