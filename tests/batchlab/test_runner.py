"""End-to-end: the reference crashed for real by each crash kind, then resumed, at 1000 documents."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from batchlab.contract import BatchConfig
from batchlab.documents import Document, parse_document, try_parse
from batchlab.errors import KitError
from batchlab.examples import EN_SENTENCES, make_documents, write_input
from batchlab.faults import CrashPlan, FaultPlan
from batchlab.ledger import read_events
from batchlab.metrics import metrics_for_run
from batchlab.runner import LedgerTail, RunSpec, prepare, read_spec, run_pass, run_passes
from batchlab.service import LatencyModel, guaranteed_busy_s

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def thousand_documents(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1000 entries (small documents): 20 duplicates, 10 invalid, 1 empty."""
    docs = make_documents(1000, seed=21, min_bytes=200, max_bytes=2500)
    return write_input(tmp_path_factory.mktemp("input") / "input.json", docs)


LATENCY = LatencyModel(median_ms=1.0)
#: A long-tail document (about 100 chunks, every call slow): it keeps pass 1 busy for seconds.
LONG_TAIL = {"id": "long-tail", "source": "handbook",
             "content": " ".join(f"{EN_SENTENCES[i % len(EN_SENTENCES)]} ({i})" for i in range(440))}
PLAN = FaultPlan(seed=5, transient_rate=0.03, slow_ids=("long-tail",))


@pytest.fixture(scope="module")
def documents_with_a_long_tail(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 1000 entries led by the long-tail document."""
    docs = make_documents(1000, seed=21, min_bytes=200, max_bytes=2500)
    return write_input(tmp_path_factory.mktemp("input") / "input.json", [LONG_TAIL, *docs])


def spec_for(impl: Path, source: Path, run_dir: Path, **kwargs: object) -> RunSpec:
    return RunSpec(impl=impl, input=source, run_dir=run_dir, latency=LATENCY, plan=PLAN,
                   config=BatchConfig(concurrency=8), timeout_s=120, **kwargs)  # type: ignore[arg-type]


CRASHES = {
    "during_call": CrashPlan(kind="during_call", at=1500),
    "after_commit": CrashPlan(kind="after_commit", at=400),
    "random": CrashPlan(kind="random", window=(0.3, 0.8)),
}


def test_the_long_tail_outlasts_the_random_kill_window() -> None:
    """Whatever the machine's speed, the long tail is in flight when the random kill lands.

    The kill comes at most 0.8 s after the pass's first service call; the long-tail
    document cannot finish sooner than its calls' modelled latencies allow.
    """
    busy = guaranteed_busy_s(parse_document(LONG_TAIL), PLAN, LATENCY)
    assert busy >= 2.5 * CRASHES["random"].window[1], busy


@pytest.mark.parametrize("kind", sorted(CRASHES))
def test_reference_commits_every_document_once_after_a_real_crash(
    kind: str, reference_impl: Path, documents_with_a_long_tail: Path, tmp_path: Path
) -> None:
    spec = spec_for(reference_impl, documents_with_a_long_tail, tmp_path / "run")
    first, second = run_passes(spec, [CRASHES[kind]])
    assert first.sigkilled, f"pass 1 was not killed: {first.outcome}\n{first.stderr}"
    events = read_events(spec.run_dir / "ledger.jsonl")
    pass1_commits = {e["doc_id"] for e in events if e["ev"] == "sink_put" and e["pass"] == 1}
    pass2_calls = {e["doc_id"] for e in events if e["ev"] == "call_start" and e["pass"] == 2}
    assert "long-tail" not in pass1_commits, "the kill came after the long tail finished"
    assert second.outcome == "ok", second.stderr
    m = metrics_for_run(spec.run_dir)
    assert m.crashes and m.crashes[0]["ev"] in ("crash", "kill")
    assert m.missing == [] and m.wrong_output == []
    assert m.completed == m.unique
    assert m.duplicates == [], [d.describe() for d in m.duplicates]
    assert m.duplicate_rate == 0.0
    assert m.passes[0].committed > 0 and m.passes[1].committed > 0  # the crash really split the work
    assert m.meets_thresholds()
    assert not pass1_commits & pass2_calls, "documents committed in pass 1 were sent to the service again"
    if kind == "after_commit":  # the document committed just before the kill is healed from the sink, not redone
        # (with the reference's group commit, so are the documents whose marks the kill took: at most pass 1's puts)
        assert 1 <= m.passes[1].report["recovered"] <= len(pass1_commits)


def test_invalid_documents_end_failed_with_their_classified_error(
    reference_impl: Path, thousand_documents: Path, tmp_path: Path
) -> None:
    spec = spec_for(reference_impl, thousand_documents, tmp_path / "run")
    run_passes(spec, [])
    import json

    raw = json.loads(thousand_documents.read_text(encoding="utf-8"))["documents"]
    expected = Counter(p.code for p in map(try_parse, raw) if not isinstance(p, Document))
    failed = Counter(e["error"] for e in read_events(spec.run_dir / "ledger.jsonl")
                     if e["ev"] == "state" and e["state"] == "failed")
    assert expected == failed and sum(expected.values()) == 11
    report = metrics_for_run(spec.run_dir).passes[0].report
    assert report is not None and report["rejected"] == 11 and report["failure_reasons"]["missing_id"] == 5


def test_a_rerun_of_a_finished_batch_executes_nothing(reference_impl: Path, example_input_path: Path,
                                                      tmp_path: Path) -> None:
    spec = spec_for(reference_impl, example_input_path, tmp_path / "run")
    run_passes(spec, [])
    calls_before = sum(e["ev"] == "call_start" for e in read_events(spec.run_dir / "ledger.jsonl"))
    result = run_pass(spec, 2)
    assert result.outcome == "ok"
    events = read_events(spec.run_dir / "ledger.jsonl")
    assert sum(e["ev"] == "call_start" for e in events) == calls_before
    m = metrics_for_run(spec.run_dir)
    assert m.passes[1].resume_time_s == 0.0 and m.passes[1].report["skipped"] == m.unique


def test_the_skeleton_fails_cleanly_and_is_reported(skeleton_impl: Path, example_input_path: Path,
                                                    tmp_path: Path) -> None:
    spec = spec_for(skeleton_impl, example_input_path, tmp_path / "run")
    results = run_passes(spec, [CrashPlan(kind="during_call", at=5)])
    assert [r.outcome for r in results] == ["raised", "raised"]
    assert "NotImplementedError" in results[0].stderr and "TODO step" in results[0].stderr
    m = metrics_for_run(spec.run_dir)
    assert m.completion_rate == 0.0 and not m.meets_thresholds()
    assert m.passes[0].student_error and "NotImplementedError" in m.passes[0].student_error


def test_an_import_error_stops_the_run_after_one_pass(tmp_path: Path, example_input_path: Path) -> None:
    impl = tmp_path / "broken.py"
    impl.write_text("import not_a_module_anywhere\n", encoding="utf-8")
    results = run_passes(spec_for(impl, example_input_path, tmp_path / "run"), [CrashPlan()])
    assert [r.outcome for r in results] == ["import error"]
    assert "ModuleNotFoundError" in results[0].stderr


def test_a_hanging_pass_is_killed_at_its_timeout(tmp_path: Path, example_input_path: Path) -> None:
    impl = tmp_path / "hangs.py"
    impl.write_text("import time\nasync def process_documents_batch(documents, **kw):\n    time.sleep(60)\n",
                    encoding="utf-8")
    spec = spec_for(impl, example_input_path, tmp_path / "run")
    spec.timeout_s = 1.0
    (result,) = run_passes(spec, [])
    assert result.timed_out and result.outcome == "timeout" and not result.killed_by_parent
    events = read_events(spec.run_dir / "ledger.jsonl")
    assert [e["ev"] for e in events if e["ev"] in ("timeout", "kill")] == ["timeout"]


def test_a_random_kill_due_after_the_pass_ended_is_not_recorded(reference_impl: Path, tmp_path: Path) -> None:
    """A pass that finishes before its random kill's delay ends ok: no kill event, not killed by the parent."""
    source = write_input(tmp_path / "input.json", make_documents(5, seed=2, min_bytes=100, max_bytes=200))
    spec = spec_for(reference_impl, source, tmp_path / "run")
    prepare(spec, fresh=True)
    result = run_pass(spec, 1, CrashPlan(kind="random", window=(30.0, 31.0)))
    events = read_events(spec.run_dir / "ledger.jsonl")
    assert any(e["ev"] == "call_start" for e in events)  # the kill's clock did start
    assert result.outcome == "ok" and not result.killed_by_parent
    assert not [e for e in events if e["ev"] == "kill"]


def test_bad_batch_input_exits_2_with_the_unified_error(reference_impl: Path, tmp_path: Path) -> None:
    source = tmp_path / "bad.json"
    source.write_text('{"documents": 5}', encoding="utf-8")
    (result,) = run_passes(spec_for(reference_impl, source, tmp_path / "run"), [])
    assert result.returncode == 2 and '"code": "wrong_type"' in result.stdout


def test_the_ledger_tail_returns_only_new_complete_lines(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    tail = LedgerTail(path)
    assert tail.read_new() == []
    path.write_bytes(b'{"ev": "a"}\n{"ev": "b"')
    assert [e["ev"] for e in tail.read_new()] == ["a"]
    with path.open("ab") as fh:
        fh.write(b'}\n{"ev": "c"}\n')
    assert [e["ev"] for e in tail.read_new()] == ["b", "c"]


def test_prepare_writes_a_spec_the_worker_can_read(reference_impl: Path, example_input_path: Path,
                                                   tmp_path: Path) -> None:
    import json

    run = prepare(spec_for(reference_impl, example_input_path, tmp_path / "run"))
    spec = json.loads((run / "spec.json").read_text(encoding="utf-8"))
    assert spec["impl"] == str(reference_impl.resolve()) and spec["plan"]["transient_rate"] == 0.03
    assert (run / "state").is_dir()


def test_a_spec_reads_back_as_the_value_that_wrote_it(reference_impl: Path, example_input_path: Path,
                                                    tmp_path: Path) -> None:
    """``read_spec`` (via ``RunSpec.from_dict``) gives back what ``prepare`` wrote: the parts spec.json holds."""
    spec = spec_for(reference_impl, example_input_path, tmp_path / "run", batch_id="batch-7")
    prepare(spec)
    back = read_spec(tmp_path / "run")
    assert back.to_dict() == spec.to_dict() and back.run_dir == tmp_path / "run"


def test_a_damaged_spec_is_named_not_a_traceback(tmp_path: Path) -> None:
    """A spec.json that is not a spec raises ``run_dir_corrupt`` naming the file."""
    (tmp_path / "spec.json").write_text('{"input": "in.json", "latency": {"no_such_field": 1}}', encoding="utf-8")
    with pytest.raises(KitError) as info:
        read_spec(tmp_path)
    assert info.value.code == "run_dir_corrupt" and "spec.json" in info.value.message


def test_a_stop_request_ends_the_pass_cleanly_and_the_resume_finishes_the_batch(
        reference_impl: Path, documents_with_a_long_tail: Path, tmp_path: Path) -> None:
    """``run_pass(stop=...)``: SIGTERM to the worker, no new documents, in-flight ones commit, exit "stopped"."""
    spec = spec_for(reference_impl, documents_with_a_long_tail, tmp_path / "run")
    prepare(spec, fresh=True)
    seen: list[dict] = []
    result = run_pass(spec, 1, on_events=seen.extend,
                      stop=lambda: "SIGTERM" if any(e["ev"] == "sink_put" for e in seen) else None)
    assert result.outcome == "stopped" and result.stopped_by == "SIGTERM" and not result.killed_by_parent
    events = read_events(tmp_path / "run" / "ledger.jsonl")
    (stopped,) = [e for e in events if e["ev"] == "stopped"]
    assert stopped["signal"] == "SIGTERM"
    first = metrics_for_run(tmp_path / "run")
    assert 0 < first.completed < first.unique
    run_pass(spec, 2)
    final = metrics_for_run(tmp_path / "run")
    assert final.missing == [] and final.duplicates == []


def test_run_passes_holds_the_run_directory_from_its_spec_to_its_last_pass(
        reference_impl: Path, tmp_path: Path) -> None:
    from batchlab.runlock import RunDirBusyError, RunDirLock

    source = write_input(tmp_path / "input.json", make_documents(10, seed=1, min_bytes=100, max_bytes=300))
    spec = spec_for(reference_impl, source, tmp_path / "run", lock_wait_s=0.1)
    with RunDirLock(tmp_path / "run", role="someone else").acquire(0):
        with pytest.raises(RunDirBusyError):
            run_passes(spec, [])
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["worker.lock"]  # nothing written
    (result,) = run_passes(spec, [])
    assert result.outcome == "ok"
