"""The streaming fold gives the figures the list-based metrics gave, on real runs, in memory or on disk alike."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
import sys
import tracemalloc
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from batchlab.backfill import run_backfill
from batchlab.batchfile import load_batch
from batchlab.contract import BatchConfig, percentile
from batchlab.documents import ident_of, parse_document
from batchlab.examples import make_documents, write_input
from batchlab.faults import CRASH_AFTER_COMMIT, CRASH_DURING_CALL, CrashPlan, FaultPlan
from batchlab.ledger import read_events
from batchlab.ledger_views import usable_events
from batchlab.metrics import compute_metrics, metrics_for_run
from batchlab.paths import solution_module
from batchlab.pipeline import expected_output
from batchlab.rundir import RunDir
from batchlab.runner import RunSpec, run_passes
from batchlab.service import LatencyModel
from batchlab.sink import SCHEMA, read_outputs, read_puts

pytestmark = pytest.mark.slow
HERE = Path(__file__).parent


def _oracle() -> ModuleType:
    spec = importlib.util.spec_from_file_location("metrics_oracle", HERE / "metrics_oracle.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["metrics_oracle"] = module
    spec.loader.exec_module(module)
    return module


def _mutant_impl(name: str, folder: Path) -> Path:
    """The reference with a grader mutant's replacements applied (tests/mutants/NAME.py)."""
    spec = importlib.util.spec_from_file_location(f"mutant_{name}", HERE.parent / "mutants" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mutant = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mutant)
    source = solution_module().read_text(encoding="utf-8")
    for old, new in mutant.REPLACEMENTS:
        assert source.count(old) == 1
        source = source.replace(old, new)
    return _write(folder / f"{name}.py", source)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _run(base: Path, name: str, *, plan: FaultPlan, crashes: list[CrashPlan], impl: Path | None = None,
         backfill: bool = False) -> Path:
    docs = make_documents(60, seed=7, min_bytes=100, max_bytes=900, duplicates=4, invalid=3)
    source = write_input(base / name / "input.json", docs)
    spec = RunSpec(impl=impl or solution_module(), input=source, run_dir=base / name / "run", plan=plan,
                   latency=LatencyModel(median_ms=2.0), config=BatchConfig(concurrency=4), timeout_s=120)
    run_passes(spec, crashes)
    if backfill:
        run_backfill(spec.run_dir)
    return spec.run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real runs of the reference (and one mutant): faults, kills and resumes, degraded outputs, a backfill."""
    if not solution_module().exists():
        pytest.skip("needs the reference solution, which a student distribution leaves out")
    base = tmp_path_factory.mktemp("fold")
    return {
        "faults and a kill mid-call": _run(base, "faults", plan=FaultPlan(seed=3, transient_rate=0.05),
                                           crashes=[CrashPlan(CRASH_DURING_CALL, at=25), CrashPlan()]),
        "degraded, killed after a commit, backfilled": _run(
            base, "degraded", plan=FaultPlan(seed=5, permanent_rate=0.15),
            crashes=[CrashPlan(CRASH_AFTER_COMMIT, at=20), CrashPlan()], backfill=True),
        "duplicates (no idempotency check)": _run(
            base, "dups", plan=FaultPlan(seed=2), impl=_mutant_impl("no_idempotency_check", base / "impl"),
            crashes=[CrashPlan(CRASH_AFTER_COMMIT, at=30), CrashPlan(), CrashPlan()]),
    }


def _old_figures(run: Path) -> dict[str, Any]:
    oracle = _oracle()
    documents = load_batch(json.loads((run / "spec.json").read_text())["input"]).documents
    old = oracle.compute_metrics(documents, oracle.usable_events(read_events(RunDir(run).ledger)),
                                 read_outputs(RunDir(run).sink), read_puts(RunDir(run).sink))
    return {"table": old.to_dict(), "latencies": old.latencies_s}


def test_the_runs_cover_what_the_fold_must_get_right(runs: dict[str, Path]) -> None:
    """The runs hold retries, kills, resumes with hits, degraded outputs, upgrades and duplicate executions."""
    figures = {name: metrics_for_run(run) for name, run in runs.items()}
    assert figures["faults and a kill mid-call"].retries > 0
    assert figures["faults and a kill mid-call"].checkpoint_hit_rate
    assert figures["degraded, killed after a commit, backfilled"].upgraded > 0
    assert figures["duplicates (no idempotency check)"].duplicates
    assert all(m.rejected and m.unique < m.total - m.rejected for m in figures.values())


@pytest.mark.parametrize("on_disk", [False, True], ids=["in memory", "on disk"])
@pytest.mark.parametrize("name", ["faults and a kill mid-call", "degraded, killed after a commit, backfilled",
                                  "duplicates (no idempotency check)"])
def test_the_fold_equals_the_list_based_metrics(runs: dict[str, Path], name: str, on_disk: bool) -> None:
    """Every figure of `batchlab metrics --json` (per pass too), and every latency, as before the fold."""
    run = runs[name]
    new = metrics_for_run(run, on_disk=on_disk, spill_keys=0 if on_disk else 10**9)
    old = _old_figures(run)
    assert new.to_dict() == old["table"]
    assert new.latencies_s == old["latencies"]


def test_the_list_entry_point_folds_the_same(runs: dict[str, Path]) -> None:
    """compute_metrics on the run's lists (the grader's way) equals metrics_for_run on its files."""
    run = runs["degraded, killed after a commit, backfilled"]
    documents = load_batch(json.loads((run / "spec.json").read_text())["input"]).documents
    events = read_events(RunDir(run).ledger)
    for on_disk in (False, True):
        listed = compute_metrics(documents, events, read_outputs(RunDir(run).sink), read_puts(RunDir(run).sink),
                                 on_disk=on_disk, spill_keys=0 if on_disk else 10**9)
        assert listed.to_dict() == metrics_for_run(run).to_dict()
    assert events == read_events(RunDir(run).ledger)  # the fold changed none of the caller's events


def _synthetic_run(base: Path, n: int) -> Path:
    """A finished run of ``n`` documents written directly (input, sink, ledger): a large run without a worker."""
    docs = [{"id": f"d{i}", "content": f"Document {i} says {'hello ' * (i % 7 + 1)}"} for i in range(n)]
    source = write_input(base / "input.json", docs)
    run = base / "run"
    run.mkdir()
    (run / "spec.json").write_text(json.dumps({"input": str(source), "impl": "x.py"}))
    conn = sqlite3.connect(run / "sink.sqlite")
    conn.executescript(SCHEMA)
    lines = [json.dumps({"ev": "pass_start", "t": 1.0, "pass": 1, "t0": 1.0})]
    for i, raw in enumerate(docs):
        doc = parse_document(raw)
        out, ident, t = expected_output(doc, "full"), ident_of(doc), 2.0 + i / 1000
        conn.execute("INSERT INTO outputs VALUES (?, ?, ?, 'full', ?, ?, ?, 1)",
                     (f"k{i}", doc.id, ident, json.dumps(out["chunks"]), json.dumps(out["vectors"]), t))
        conn.execute("INSERT INTO puts (key, doc_id, ident, mode, pass, t) VALUES (?, ?, ?, 'full', 1, ?)",
                     (f"k{i}", doc.id, ident, t))
        lines += [json.dumps({"ev": "call_start", "t": t, "pass": 1, "ident": ident, "attempt": 1}),
                  json.dumps({"ev": "sink_put", "t": t + 0.0005 * (i % 13), "pass": 1, "ident": ident})]
    conn.commit()
    conn.close()
    (run / "ledger.jsonl").write_text("\n".join(lines) + "\n")
    return run


def test_memory_stays_small_while_the_run_grows(tmp_path: Path) -> None:
    """On disk, the fold of 12 000 documents peaks far below what the lists of the run take (a generous bound)."""
    run = _synthetic_run(tmp_path, 12_000)
    tracemalloc.start()
    try:
        folded = metrics_for_run(run, on_disk=True, spill_keys=500)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        events = usable_events(read_events(RunDir(run).ledger))
        outputs = read_outputs(RunDir(run).sink)
        _, lists_peak = tracemalloc.get_traced_memory()
        del events, outputs
    finally:
        tracemalloc.stop()
    assert folded.completed == 12_000 and folded.passes[0].latency_count == 12_000
    assert peak < 8_000_000 and peak * 3 < lists_peak, (peak, lists_peak)


def test_percentiles_on_disk_are_the_exact_ones(tmp_path: Path) -> None:
    """Latency p50/p95 read from the scratch table equal the sorted list's, per pass and overall."""
    run = _synthetic_run(tmp_path, 3000)
    on_disk = metrics_for_run(run, on_disk=True, spill_keys=10)
    values = on_disk.latencies_s
    assert len(values) == 3000
    assert on_disk.latency_p50_s == percentile(values, 50) and on_disk.latency_p95_s == percentile(values, 95)
    assert on_disk.passes[0].latency_p95_s == percentile(values, 95)
    assert metrics_for_run(run, on_disk=False, spill_keys=10**9).to_dict() == on_disk.to_dict()


def test_the_graders_pass_views_count_as_the_fold(runs: dict[str, Path]) -> None:
    """grader/analysis.py's calls, commits, retries, upgrades and pass ends are the fold's, pass by pass."""
    from grader.analysis import pass_views

    for run in runs.values():
        documents = load_batch(json.loads((run / "spec.json").read_text())["input"]).documents
        events, puts = read_events(RunDir(run).ledger), read_puts(RunDir(run).sink)
        folded = metrics_for_run(run).passes
        views = pass_views(documents, events, puts)
        assert [v.pass_no for v in views] == [p.pass_no for p in folded]
        for view, pm in zip(views, folded, strict=True):
            assert (view.calls, view.puts, view.exit, view.crash) == (pm.calls, pm.committed, pm.exit, pm.crash)
            assert (view.expected["retries"], view.expected["upgraded"]) == (pm.retries, pm.upgraded)
            assert view.expected["checkpoint_hit_rate"] * view.expected["unique"] == pytest.approx(pm.hits)
