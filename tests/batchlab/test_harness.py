"""The process boundary: service, sink and ledger on the harness side, the worker's proxies over a socket.

Real passes (real worker processes, real SQLite, real SIGKILLs) with ``RunSpec.boundary`` on; the
hostile fixtures of ``tests/grader/hostile/`` are used as implementations where a test needs a forger.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from batchlab.contract import BatchConfig
from batchlab.examples import write_input
from batchlab.faults import CrashPlan, FaultPlan
from batchlab.ledger import FIELDS, Ev, read_events
from batchlab.metrics import metrics_for_run
from batchlab.rundir import RunDir
from batchlab.runner import RunSpec, prepare, run_pass, run_passes
from batchlab.service import LatencyModel
from batchlab.sink import read_outputs
from batchlab.worker import WorkerExit

pytestmark = pytest.mark.slow

HOSTILE = Path(__file__).resolve().parents[1] / "grader" / "hostile"
PLAN = FaultPlan(seed=7, transient_rate=0.03)
CALL_EVENTS = (Ev.CALL_START, Ev.CALL_OK, Ev.CALL_FAIL, Ev.SINK_PUT)


def spec_for(impl: Path, source: Path, run_dir: Path, **kwargs: Any) -> RunSpec:
    fields: dict[str, Any] = {"latency": LatencyModel(median_ms=1.0), "plan": PLAN,
                              "config": BatchConfig(concurrency=8), "timeout_s": 120, "boundary": True, **kwargs}
    return RunSpec(impl=impl, input=source, run_dir=run_dir, **fields)


def kinds(run_dir: Path) -> Counter[str]:
    return Counter(e["ev"] for e in read_events(RunDir(run_dir).ledger))


def test_a_pass_behind_the_boundary_records_what_an_in_process_pass_records(
        reference_impl: Path, example_input_path: Path, tmp_path: Path) -> None:
    """The reference through the socket makes the same calls, faults and commits as in-process (seeded faults)."""
    counts = {}
    for boundary in (False, True):
        run_dir = tmp_path / f"run-{boundary}"
        results = run_passes(spec_for(reference_impl, example_input_path, run_dir, boundary=boundary), [])
        assert [r.returncode for r in results] == [0], results[0].stderr[-2000:]
        assert metrics_for_run(run_dir).completion_rate == 1.0
        counts[boundary] = {ev: kinds(run_dir)[ev] for ev in (*CALL_EVENTS, Ev.STATE, Ev.PASS_END)}
        for event in read_events(RunDir(run_dir).ledger):
            assert not FIELDS[Ev(event["ev"])].problems(event), event
    assert counts[True] == counts[False]
    assert (tmp_path / "run-True" / "pass1.report.json").is_file()


def test_a_crash_after_a_commit_is_delivered_once_the_commit_is_durable(
        reference_impl: Path, example_input_path: Path, tmp_path: Path) -> None:
    """The harness side commits the K-th put, records the crash, then SIGKILLs the worker: the key is in the sink."""
    run_dir = tmp_path / "run"
    results = run_passes(spec_for(reference_impl, example_input_path, run_dir), [CrashPlan("after_commit", at=20)])
    assert results[0].sigkilled and not results[0].killed_by_parent
    events = [e for e in read_events(RunDir(run_dir).ledger) if e["pass"] == 1]
    puts = [e for e in events if e["ev"] == Ev.SINK_PUT]
    assert len(puts) == 20 and events.index(puts[-1]) < next(i for i, e in enumerate(events) if e["ev"] == Ev.CRASH)
    assert puts[-1]["key"] in {r.key for r in read_outputs(RunDir(run_dir).sink)}
    m = metrics_for_run(run_dir)
    assert results[-1].returncode == 0 and m.completion_rate == 1.0 and m.duplicate_rate == 0.0


def test_a_crash_during_a_call_kills_the_worker_before_the_call_answers(
        reference_impl: Path, example_input_path: Path, tmp_path: Path) -> None:
    """The K-th call starts, the crash is recorded, and that call never ends (no ok, no fail) in the killed pass."""
    run_dir = tmp_path / "run"
    results = run_passes(spec_for(reference_impl, example_input_path, run_dir), [CrashPlan("during_call", at=50)])
    assert results[0].sigkilled and not results[0].killed_by_parent
    first = [e for e in read_events(RunDir(run_dir).ledger) if e["pass"] == 1]
    crash = next(e for e in first if e["ev"] == Ev.CRASH)
    assert crash["at"] == 50
    assert not [e for e in first if e["ev"] in (Ev.CALL_OK, Ev.CALL_FAIL) and e["call"] == 50]
    assert metrics_for_run(run_dir).completion_rate == 1.0


CANCELLING = '''
import asyncio
from batchlab.contract import BatchReport
from batchlab.documents import ident_of, parse_document
from batchlab.pipeline import chunk_text, clean_text


async def process_documents_batch(documents, *, batch_id, service, sink, state_dir, config, progress=None, **kw):
    for raw in documents:
        doc = parse_document(raw)
        chunks = chunk_text(clean_text(doc.content))
        vectors = []
        for i, text in enumerate(chunks):
            while True:
                try:
                    vectors.append(await asyncio.wait_for(service.embed(doc, i, text), 0.3))
                    break
                except asyncio.TimeoutError:
                    continue
        sink.put(ident_of(doc), doc, chunks, vectors)
    return BatchReport(batch_id=batch_id)
'''


def test_a_call_the_processor_cancels_is_cancelled_on_the_harness_side(tmp_path: Path) -> None:
    """A stuck call freed by the processor's deadline is recorded ``cancelled`` there; the retry answers."""
    impl = tmp_path / "cancelling.py"
    impl.write_text(CANCELLING, encoding="utf-8")
    source = write_input(tmp_path / "input.json", [{"id": "doc-a", "content": "One sentence. Another one."}])
    spec = spec_for(impl, source, tmp_path / "run", plan=FaultPlan(seed=1, stuck_ids=("doc-a",)))
    results = run_passes(spec, [])
    assert results[0].returncode == 0, results[0].stderr[-2000:]
    calls = [e for e in read_events(RunDir(tmp_path / "run").ledger) if e["ev"] in (Ev.CALL_FAIL, Ev.CALL_OK)]
    assert calls[0]["ev"] == Ev.CALL_FAIL and calls[0]["error"] == "cancelled"
    assert calls[1]["ev"] == Ev.CALL_OK and calls[1]["attempt"] == 2
    assert metrics_for_run(tmp_path / "run").completion_rate == 1.0


def test_forged_events_are_refused_and_outputs_without_calls_are_marked_unbacked(
        example_input_path: Path, tmp_path: Path) -> None:
    """A worker writing the protocol itself (forged call events, puts without calls, fake replies) adds no call
    to the ledger; every output it commits carries ``unbacked``."""
    run_dir = tmp_path / "run"
    prepare(spec := spec_for(HOSTILE / "bypass_proxy" / "document_processor.py", example_input_path, run_dir),
            fresh=True)
    result = run_pass(spec, 1)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.refused_events > 0
    counted = kinds(run_dir)
    assert counted[Ev.CALL_START] == counted[Ev.CALL_OK] == 0
    puts = [e for e in read_events(RunDir(run_dir).ledger) if e["ev"] == Ev.SINK_PUT]
    assert puts and all(e.get("unbacked") for e in puts)


def test_records_written_beside_the_harness_are_detected(example_input_path: Path, tmp_path: Path) -> None:
    """Without a sandbox a worker can open the ledger and the sink: lines and rows it wrote there are found."""
    run_dir = tmp_path / "run"
    prepare(spec := spec_for(HOSTILE / "forge_exact" / "document_processor.py", example_input_path, run_dir),
            fresh=True)
    result = run_pass(spec, 1)
    assert result.returncode == 0, result.stderr[-2000:]
    assert any("ledger holds lines the harness did not write" in f for f in result.foreign), result.foreign
    assert any("wrote to the sink" in f for f in result.foreign), result.foreign


def test_a_change_to_the_records_between_passes_is_detected(
        reference_impl: Path, example_input_path: Path, tmp_path: Path) -> None:
    """What a pass left is sealed: a line appended before the next pass starts is named by that pass."""
    run_dir = tmp_path / "run"
    spec = spec_for(reference_impl, example_input_path, run_dir)
    prepare(spec, fresh=True)
    assert run_pass(spec, 1).foreign == []
    with RunDir(run_dir).ledger.open("a", encoding="utf-8") as fh:
        fh.write('{"ev":"call_ok","t":0,"pass":1,"pid":1}\n')
    assert any("changed since the last pass ended" in f for f in run_pass(spec, 2).foreign)
    prepare(spec, fresh=True)  # a fresh run forgets the seal
    assert run_pass(spec, 1).foreign == []


#: A wrapper that swallows SIGTERM, as bubblewrap does: only the harness side's stop frame reaches the worker
#: (which dies with the wrapper, its parent now).
NO_SIGTERM = ("import os, signal, subprocess, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
              "os.environ['BATCHLAB_PARENT_LINK'] = f'pdeathsig:{os.getpid()}'; "
              "sys.exit(subprocess.call(sys.argv[1:], close_fds=False))")


def test_a_stop_request_reaches_a_worker_that_never_gets_sigterm(
        reference_impl: Path, example_input_path: Path, tmp_path: Path) -> None:
    """The stop goes over the socket too: a worker behind a wrapper that drops SIGTERM still stops cleanly (exit 5)."""
    spec = spec_for(reference_impl, example_input_path, tmp_path / "run", latency=LatencyModel(median_ms=30.0),
                    wrap=lambda cmd: [sys.executable, "-c", NO_SIGTERM, *cmd])
    prepare(spec, fresh=True)
    seen: list[dict[str, Any]] = []
    result = run_pass(spec, 1, on_events=seen.extend,
                      stop=lambda: "SIGTERM" if any(e["ev"] == Ev.SINK_PUT for e in seen) else None)
    assert result.returncode == WorkerExit.STOPPED, (result.returncode, result.stderr[-2000:])
    assert kinds(tmp_path / "run")[Ev.STOPPED] == 1


def test_a_planned_outage_and_the_live_switch_act_on_the_harness_side(
        reference_impl: Path, example_input_path: Path, tmp_path: Path) -> None:
    """The service's outages live where it does: a planned one and the run's switch file both fail calls fast
    (``unreachable``), each change is recorded, and the batch still ends committed."""
    run_dir = tmp_path / "run"
    spec = spec_for(reference_impl, example_input_path, run_dir, plan=FaultPlan(seed=3, outages=((0.0, 0.3),)))
    prepare(spec, fresh=True)
    RunDir(run_dir).outage_switch.touch()
    seen: list[dict[str, Any]] = []

    def switch_back() -> None:
        if any(e["ev"] == Ev.CALL_FAIL for e in seen):
            RunDir(run_dir).outage_switch.unlink(missing_ok=True)

    result = run_pass(spec, 1, on_events=lambda events: (seen.extend(events), switch_back()))
    assert result.returncode == 0, result.stderr[-2000:]
    outages = [e for e in read_events(RunDir(run_dir).ledger) if e["ev"] == Ev.OUTAGE]
    assert [e["state"] for e in outages][:2] == ["down", "up"]
    assert any(e["ev"] == Ev.CALL_FAIL and e["error"] == "unreachable" for e in seen)
    assert metrics_for_run(run_dir).completion_rate == 1.0
