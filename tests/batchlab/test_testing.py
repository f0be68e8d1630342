"""The shared test doubles (``batchlab.testing``) and the contract's Protocols they and the harness fit."""

from __future__ import annotations

import asyncio
import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from batchlab.contract import PROCESSING, CheckpointStore, Service, Sink
from batchlab.documents import Document
from batchlab.faults import FaultPlan
from batchlab.ledger import Ledger, read_events
from batchlab.service import PermanentServiceError, SimulatedService, TransientServiceError
from batchlab.sink import SqliteSink, read_outputs
from batchlab.testing import FakeClock, GuardedService, KillingSink, MemoryCheckpointStore, RecordingSleep
from batchlab.worker import load_impl

DOC = Document(id="doc-1", content="Some text.", source="wiki")


def protocol_mismatches(protocol: type, cls: type) -> list[str]:
    """The members of ``protocol`` that ``cls`` lacks or spells with other parameters (names and kinds)."""
    problems = []
    for name, member in vars(protocol).items():
        if name.startswith("_") and name != "__contains__" or not callable(member):
            continue
        impl = getattr(cls, name, None)
        if impl is None:
            problems.append(f"{name}: missing")
            continue
        want = [(p.name, p.kind) for p in inspect.signature(member).parameters.values()]
        have = [(p.name, p.kind) for p in inspect.signature(impl).parameters.values()]
        if want != have:
            problems.append(f"{name}: {have} instead of {want}")
    return problems


class TestProtocols:
    @pytest.mark.parametrize(("protocol", "cls"), [
        (Service, SimulatedService), (Service, GuardedService), (Sink, SqliteSink), (Sink, KillingSink),
        (CheckpointStore, MemoryCheckpointStore)])
    def test_the_harness_and_its_doubles_have_the_protocols_methods(self, protocol: type, cls: type) -> None:
        """What the harness hands a processor, and each double of it, has every method its Protocol names."""
        assert protocol_mismatches(protocol, cls) == []

    def test_the_reference_store_has_the_checkpoint_protocols_methods(self, reference_impl: Path) -> None:
        """The solution's (and so the skeleton's) CheckpointStore is a contract.CheckpointStore by shape."""
        module = load_impl(reference_impl, name="protocol_reference")
        assert protocol_mismatches(CheckpointStore, module.CheckpointStore) == []

    def test_a_store_with_another_signature_is_caught(self) -> None:
        """The shape check can fail: a transition without the keyword-only error is reported."""
        class Wrong:
            def get(self, key: str) -> None: ...

            def transition(self, key: str, state: str, doc_id: str = "") -> None: ...

        problems = protocol_mismatches(CheckpointStore, Wrong)
        assert [p.split(":")[0] for p in problems] == ["transition", "entries", "close"]


class TestClockAndSleep:
    def test_a_fake_clock_moves_only_when_advanced(self) -> None:
        """The clock stands still between advances, and refuses to go back."""
        clock = FakeClock(10.0)
        before = clock()
        clock.advance(2.5)
        with pytest.raises(ValueError):
            clock.advance(-1)
        assert (before, clock()) == (10.0, 12.5)

    def test_a_recording_sleep_records_and_moves_its_clock(self) -> None:
        """Each delay is recorded, in order, and moves the clock by as much; nothing really waits."""
        clock = FakeClock()
        sleep = RecordingSleep(clock=clock)

        async def twice() -> None:
            await sleep(0.5)
            await sleep(1)

        asyncio.run(twice())
        assert (sleep.delays, clock()) == ([0.5, 1.0], 1.5)

    def test_a_recording_sleep_gives_other_tasks_a_turn(self) -> None:
        """By default it yields to the loop once, as a real sleep would; ``yield_to_loop=False`` does not."""
        async def ran_meanwhile(sleep: RecordingSleep) -> bool:
            flag: list[bool] = []
            handle = asyncio.get_running_loop().call_soon(flag.append, True)
            await sleep(0.1)
            handle.cancel()
            return bool(flag)

        assert (asyncio.run(ran_meanwhile(RecordingSleep())),
                asyncio.run(ran_meanwhile(RecordingSleep(yield_to_loop=False)))) == (True, False)

    def test_a_recording_sleep_drives_tenacity(self) -> None:
        """Passed as tenacity's ``sleep``, it receives every wait between attempts."""
        from tenacity import AsyncRetrying, stop_after_attempt, wait_fixed

        sleep = RecordingSleep()
        calls = 0

        async def flaky() -> None:
            async for attempt in AsyncRetrying(stop=stop_after_attempt(3), wait=wait_fixed(0.25), sleep=sleep):
                with attempt:
                    nonlocal calls
                    calls += 1
                    if calls < 3:
                        raise TransientServiceError("timeout")

        asyncio.run(flaky())
        assert (calls, sleep.delays) == (3, [0.25, 0.25])


class TestMemoryCheckpointStore:
    def test_counts_attempts_and_keeps_the_last_error(self) -> None:
        """An attempt per move into processing; the last error stays until a new one replaces it."""
        store = MemoryCheckpointStore("unused", "batch")
        store.transition("k", PROCESSING, doc_id="d")
        store.transition("k", "failed", error="boom")
        entry = store.transition("k", PROCESSING)
        assert (entry.attempts, entry.last_error, entry.doc_id, entry.state) == (2, "boom", "d", PROCESSING)

    def test_entries_are_a_copy_and_close_is_recorded(self) -> None:
        """Changing what entries() returned changes nothing in the store; close() is noted."""
        store = MemoryCheckpointStore("unused", "batch")
        store.transition("k", PROCESSING)
        store.entries().clear()
        store.close()
        assert (list(store.entries()), store.get("missing"), store.closed) == (["k"], None, True)

    def test_the_reference_batch_runs_on_it(self, reference_impl: Path, tmp_path: Path) -> None:
        """Swapped in for the reference's own store, a whole batch runs and the report counts from it."""
        module = load_impl(reference_impl, name="memory_store_reference")
        vars(module)["CheckpointStore"] = MemoryCheckpointStore
        docs = [{"id": f"d{i}", "content": f"text number {i}."} for i in range(5)]
        with Ledger(tmp_path / "ledger.jsonl", pass_no=1) as ledger:
            sink = SqliteSink(tmp_path / "sink.sqlite", ledger=ledger)
            report = asyncio.run(module.process_documents_batch(
                docs, batch_id="b", service=SimulatedService(ledger=ledger, sleep=RecordingSleep()), sink=sink,
                state_dir=tmp_path / "never-created"))
            sink.close()
        assert (report.done, report.executed, (tmp_path / "never-created").exists()) == (5, 5, False)


class TestGuardedService:
    def test_past_the_guard_a_chunk_fails_permanently_without_a_call(self, tmp_path: Path) -> None:
        """Two attempts reach the service; the third is refused as a grader guard and counted."""
        with Ledger(tmp_path / "ledger.jsonl", pass_no=1) as ledger:
            service = GuardedService(plan=FaultPlan(fail_first_ids={"doc-1": 5}), ledger=ledger,
                                     sleep=RecordingSleep(), guard=2)
            kinds = []
            for _ in range(3):
                try:
                    asyncio.run(service.embed(DOC, 0, "x"))
                except (TransientServiceError, PermanentServiceError) as exc:
                    kinds.append(exc.kind)
        assert (kinds[2], service.calls, service.guard_trips) == ("grader_guard", 2, 1)

    def test_without_a_guard_it_is_the_harness_service(self, tmp_path: Path) -> None:
        """guard=None never trips: the call goes through and is in the ledger."""
        with Ledger(tmp_path / "ledger.jsonl", pass_no=1) as ledger:
            service = GuardedService(ledger=ledger, sleep=RecordingSleep())
            asyncio.run(service.embed(DOC, 0, "x"))
        assert ([e["ev"] for e in read_events(tmp_path / "ledger.jsonl")], service.guard_trips) == (
            ["call_start", "call_ok"], 0)


class TestKillingSink:
    def test_the_crash_fires_before_the_kth_put_is_written(self, tmp_path: Path) -> None:
        """With an injected crash, the second put is announced in the ledger and not in the outputs."""
        fired: list[int] = []
        with Ledger(tmp_path / "ledger.jsonl", pass_no=1) as ledger:
            sink = KillingSink(tmp_path / "sink.sqlite", ledger=ledger, kill_before_put_at=2,
                               on_crash=lambda: fired.append(len(read_outputs(tmp_path / "sink.sqlite"))))
            sink.put("k1", DOC, ["a"], [[1.0]])
            sink.put("k2", DOC, ["b"], [[2.0]])
            sink.close()
        crash = [e for e in read_events(tmp_path / "ledger.jsonl") if e["ev"] == "crash"]
        assert (fired, [(e["kind"], e["at"]) for e in crash]) == ([1], [("before_commit", 2)])

    def test_a_real_kill_leaves_the_earlier_puts_and_not_the_kth(self, tmp_path: Path) -> None:
        """In a child process the default crash is a SIGKILL: the child dies and only the first put is kept."""
        code = textwrap.dedent(f"""
            from batchlab.documents import Document
            from batchlab.testing import KillingSink
            sink = KillingSink({str(tmp_path / "sink.sqlite")!r}, kill_before_put_at=2)
            doc = Document(id="d", content="c", source="s")
            sink.put("k1", doc, ["a"], [[1.0]])
            sink.put("k2", doc, ["b"], [[2.0]])
            print("survived")
        """)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                              env={**os.environ})
        keys: list[Any] = [r.key for r in read_outputs(tmp_path / "sink.sqlite")]
        assert (done.returncode, done.stdout, keys) == (-9, "", ["k1"])
