"""The simulated service: faults per plan, attempts counted by the service, every call in the ledger."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from batchlab.documents import Document
from batchlab.faults import CrashPlan, FaultPlan
from batchlab.ledger import Ledger, read_events
from batchlab.pipeline import chunk_text, clean_text, embed
from batchlab.service import (
    LatencyModel,
    PermanentServiceError,
    RecentAttempts,
    SimulatedService,
    TransientServiceError,
    guaranteed_busy_s,
)

DOC = Document(id="doc-1", content="Some text.", source="wiki")


def make(tmp_path: Path, **kwargs: object) -> tuple[SimulatedService, list[float], Path]:
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    path = tmp_path / "ledger.jsonl"
    service = SimulatedService(ledger=Ledger(path, pass_no=1), sleep=sleep, **kwargs)  # type: ignore[arg-type]
    return service, slept, path


class TestSimulatedService:
    def test_returns_the_model_embedding(self, tmp_path: Path) -> None:
        service, _, _ = make(tmp_path)
        assert asyncio.run(service.embed(DOC, 0, "Some text.")) == embed("Some text.")

    def test_transient_fault_then_success_on_retry(self, tmp_path: Path) -> None:
        service, _, ledger = make(tmp_path, plan=FaultPlan(fail_first_ids={"doc-1": 1}))
        with pytest.raises(TransientServiceError):
            asyncio.run(service.embed(DOC, 0, "x"))
        asyncio.run(service.embed(DOC, 0, "x"))
        events = [(e["ev"], e["attempt"]) for e in read_events(ledger)]
        assert events == [("call_start", 1), ("call_fail", 1), ("call_start", 2), ("call_ok", 2)]

    def test_permanent_fault_is_permanent(self, tmp_path: Path) -> None:
        service, _, _ = make(tmp_path, plan=FaultPlan(permanent_ids=("doc-1",)))
        for _ in range(3):
            with pytest.raises(PermanentServiceError):
                asyncio.run(service.embed(DOC, 0, "x"))

    def test_latency_is_slept_through_the_injected_sleep(self, tmp_path: Path) -> None:
        service, slept, _ = make(tmp_path, latency=LatencyModel(median_ms=10, sigma=0.0))
        asyncio.run(service.embed(DOC, 0, "x"))
        assert slept == [pytest.approx(0.010)]

    def test_slow_calls_form_a_long_tail(self, tmp_path: Path) -> None:
        service, slept, _ = make(tmp_path, latency=LatencyModel(median_ms=10, sigma=0.0),
                                 plan=FaultPlan(slow_rate=1.0, slow_factor=20))
        asyncio.run(service.embed(DOC, 0, "x"))
        assert slept == [pytest.approx(0.2)]

    def test_crash_during_the_kth_call_fires_inside_that_call(self, tmp_path: Path) -> None:
        fired: list[int] = []
        service, _, ledger = make(tmp_path, crash=CrashPlan(kind="during_call", at=2),
                                  on_crash=lambda: fired.append(1))
        asyncio.run(service.embed(DOC, 0, "a"))
        assert not fired
        asyncio.run(service.embed(DOC, 1, "b"))
        assert fired == [1]
        crash = [e for e in read_events(ledger) if e["ev"] == "crash"]
        assert crash and crash[0]["at"] == 2 and crash[0]["kind"] == "during_call"

    def test_counts_concurrent_calls_for_one_document(self, tmp_path: Path) -> None:
        service, _, ledger = make(tmp_path)

        async def both() -> None:
            gate = asyncio.Event()

            async def sleep(_: float) -> None:
                await gate.wait()

            service._sleep = sleep  # the two calls overlap until the gate opens
            first = asyncio.create_task(service.embed(DOC, 0, "a"))
            second = asyncio.create_task(service.embed(DOC, 1, "b"))
            await asyncio.sleep(0)
            gate.set()
            await asyncio.gather(first, second)

        asyncio.run(both())
        assert service.max_doc_inflight == 2 and service.max_inflight == 2
        assert max(e["doc_inflight"] for e in read_events(ledger) if e["ev"] == "call_start") == 2


class TestPoisonDocuments:
    def test_a_poison_document_raises_an_error_that_is_not_a_service_error_and_is_in_the_ledger(
            self, tmp_path: Path) -> None:
        """Not retryable and not caught by ``except ServiceError``: what an odd document does to naive code."""
        from batchlab.service import MalformedResponseError, ServiceError

        service, _, ledger = make(tmp_path, plan=FaultPlan(poison_ids=("doc-1",)))
        with pytest.raises(MalformedResponseError) as info:
            asyncio.run(service.embed(DOC, 0, "x"))
        assert not isinstance(info.value, ServiceError) and isinstance(info.value, ValueError)
        assert [e["ev"] for e in read_events(ledger)] == ["call_start", "call_fail"]


class TestOutages:
    def test_a_planned_outage_fails_every_call_fast_and_the_ledger_says_when_it_began_and_ended(
            self, tmp_path: Path) -> None:
        """Inside the window: ``unreachable`` (transient) after a millisecond; outside it: answers; outage events."""
        now = [0.0]
        service, slept, ledger = make(tmp_path, plan=FaultPlan(outages=((1.0, 2.0),)), clock=lambda: now[0],
                                      latency=LatencyModel(median_ms=0.0))
        asyncio.run(service.embed(DOC, 0, "x"))
        now[0] = 1.5
        for _ in range(3):
            with pytest.raises(TransientServiceError) as info:
                asyncio.run(service.embed(DOC, 0, "x"))
            assert info.value.kind == "unreachable"
        assert slept[-3:] == [0.001, 0.001, 0.001]
        now[0] = 3.0
        asyncio.run(service.embed(DOC, 0, "x"))
        events = read_events(ledger)
        assert [(e["ev"], e.get("state"), e.get("error")) for e in events if e["ev"] != "call_start"] == [
            ("call_ok", None, None), ("outage", "down", None), ("call_fail", None, "unreachable"),
            ("call_fail", None, "unreachable"), ("call_fail", None, "unreachable"), ("outage", "up", None),
            ("call_ok", None, None)]
        assert {e["source"] for e in events if e["ev"] == "outage"} == {"plan", "none"}

    def test_a_planned_outage_counts_from_the_first_call_not_from_the_services_creation(self, tmp_path: Path) -> None:
        """A worker that makes its first call 10 s after the service was built (a slow start) still meets the outage
        planned at 0 s for 1 s; 1.5 s after that first call the service answers again."""
        now = [0.0]
        service, _, _ = make(tmp_path, plan=FaultPlan(outages=((0.0, 1.0),)), clock=lambda: now[0],
                             latency=LatencyModel(median_ms=0.0))
        now[0] = 10.0
        with pytest.raises(TransientServiceError) as info:
            asyncio.run(service.embed(DOC, 0, "x"))
        assert info.value.kind == "unreachable"
        now[0] = 11.5
        asyncio.run(service.embed(DOC, 0, "x"))

    def test_the_live_switch_takes_the_service_down_while_its_file_exists(self, tmp_path: Path) -> None:
        """The dashboard's "断开外部模型": the file appears, calls fail; it goes, calls answer again."""
        switch = tmp_path / "outage.switch"
        service, _, ledger = make(tmp_path, outage_switch=switch, latency=LatencyModel(median_ms=0.0))
        switch.touch()
        with pytest.raises(TransientServiceError):
            asyncio.run(service.embed(DOC, 0, "x"))
        switch.unlink()
        asyncio.run(service.embed(DOC, 0, "x"))
        assert [(e["state"], e["source"]) for e in read_events(ledger) if e["ev"] == "outage"] == [
            ("down", "switch"), ("up", "none")]


class TestStuckCalls:
    def test_a_stuck_call_hangs_until_cancelled_and_the_ledger_records_the_cancellation(self, tmp_path: Path) -> None:
        """A deadline frees it (``cancelled`` in the ledger); the retry answers."""
        service, _, ledger = make(tmp_path, plan=FaultPlan(stuck_ids=("doc-1",)), latency=LatencyModel(median_ms=0.0))

        async def with_deadline() -> list[float]:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.05):
                    await service.embed(DOC, 0, "x")
            return await service.embed(DOC, 0, "x")

        assert asyncio.run(with_deadline()) == embed("x")
        assert [(e["ev"], e["attempt"], e.get("error")) for e in read_events(ledger)] == [
            ("call_start", 1, None), ("call_fail", 1, "cancelled"), ("call_start", 2, None), ("call_ok", 2, None)]
        assert service.inflight == 0


class TestGuaranteedBusyTime:
    LONG = Document(id="long", content=" ".join(f"Sentence number {i} of a long document." for i in range(60)),
                    source="wiki")

    def test_a_document_embedded_in_order_takes_at_least_its_guaranteed_busy_time(self) -> None:
        """The figure tests rely on to place a kill: real sleeps never make it shorter."""
        import time

        plan, latency = FaultPlan(seed=4, slow_ids=("long",), slow_factor=5.0), LatencyModel(median_ms=2.0)
        service = SimulatedService(plan=plan, latency=latency)
        chunks = chunk_text(clean_text(self.LONG.content))

        async def embed_in_order() -> None:
            for i, text in enumerate(chunks):
                await service.embed(self.LONG, i, text)

        started = time.perf_counter()
        asyncio.run(embed_in_order())
        elapsed = time.perf_counter() - started
        busy = guaranteed_busy_s(self.LONG, plan, latency)
        assert len(chunks) >= 5 and busy > 0.03
        assert elapsed >= busy

    def test_slow_documents_are_busy_slow_factor_times_longer(self) -> None:
        latency = LatencyModel(median_ms=2.0)
        normal = guaranteed_busy_s(self.LONG, FaultPlan(seed=4), latency)
        slow = guaranteed_busy_s(self.LONG, FaultPlan(seed=4, slow_ids=("long",), slow_factor=10.0), latency)
        assert slow > 5 * normal > 0


class TestRecentAttempts:
    def test_a_chunk_called_within_the_last_memory_calls_keeps_counting(self) -> None:
        """However many other chunks are called, one called again within ``memory`` calls gets its next attempt."""
        attempts = RecentAttempts(memory=100)
        assert attempts.bump("doc-a", 0) == 1
        for round_no in range(2, 12):
            for other in range(99):
                attempts.bump(f"doc-{round_no}-{other}", 0)
            assert attempts.bump("doc-a", 0) == round_no
        assert attempts[("doc-a", 0)] == 11 and attempts[("doc-a", 1)] == 0

    def test_memory_stays_bounded_and_the_oldest_chunks_are_forgotten(self) -> None:
        """At most twice ``memory`` chunks are remembered; a chunk not called for that long starts again at 1."""
        attempts = RecentAttempts(memory=100)
        attempts.bump("doc-old", 3)
        for other in range(1000):
            attempts.bump(f"doc-{other}", 0)
            assert len(attempts) <= 200
        assert attempts[("doc-old", 3)] == 0 and attempts.bump("doc-old", 3) == 1

    def test_the_service_numbers_attempts_per_chunk_in_the_ledger(self, tmp_path: Path) -> None:
        """Two chunks of one document called in turn are each counted from attempt 1."""
        service, _, ledger = make(tmp_path)
        for chunk in (0, 1, 0, 1, 0):
            asyncio.run(service.embed(DOC, chunk, "x"))
        starts = [(e["chunk"], e["attempt"]) for e in read_events(ledger) if e["ev"] == "call_start"]
        assert starts == [(0, 1), (1, 1), (0, 2), (1, 2), (0, 3)]
