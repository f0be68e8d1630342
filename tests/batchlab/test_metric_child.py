"""The ledger's half of the metric fold in a child process: the same figures as folded in one process."""

from __future__ import annotations

from pathlib import Path

import pytest
from batchlab import metric_child
from batchlab.contract import BatchConfig
from batchlab.examples import make_documents, write_input
from batchlab.faults import CRASH_AFTER_COMMIT, CrashPlan, FaultPlan
from batchlab.metric_child import LedgerChild, fold_ledger_of
from batchlab.metrics import metrics_for_run
from batchlab.paths import solution_module
from batchlab.runner import RunSpec, run_passes
from batchlab.service import LatencyModel


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run of the reference with retries, killed after a commit and resumed (two passes)."""
    if not solution_module().exists():
        pytest.skip("needs the reference solution, which a student distribution leaves out")
    base = tmp_path_factory.mktemp("child")
    docs = make_documents(40, seed=11, min_bytes=100, max_bytes=700, duplicates=3, invalid=2)
    spec = RunSpec(impl=solution_module(), input=write_input(base / "input.json", docs), run_dir=base / "run",
                   plan=FaultPlan(seed=4, transient_rate=0.08), latency=LatencyModel(median_ms=1.0),
                   config=BatchConfig(concurrency=4), timeout_s=120)
    run_passes(spec, [CrashPlan(CRASH_AFTER_COMMIT, at=15)])
    return spec.run_dir


def test_a_crashed_and_resumed_runs_metrics_are_the_same_with_the_child(resumed_run: Path) -> None:
    """Every figure (per pass, hits and resume time included) and every latency: child or not, in memory or on disk."""
    alone = metrics_for_run(resumed_run, parallel=False)
    assert len(alone.passes) == 2 and alone.retries > 0 and alone.checkpoint_hit_rate
    for on_disk in (False, True):
        both = metrics_for_run(resumed_run, parallel=True, on_disk=on_disk, spill_keys=0 if on_disk else 10**9)
        assert both.to_dict() == alone.to_dict()
        assert both.latencies_s == alone.latencies_s


def test_the_child_answers_what_the_caller_would_fold(resumed_run: Path) -> None:
    """A real child process returns the ledger's half, pass by pass, as this process folds it."""
    child = LedgerChild(resumed_run, on_disk=False, spill_keys=10**9)
    try:
        half = child.result()
    finally:
        child.close()
    assert half is not None
    assert half == fold_ledger_of(resumed_run, on_disk=False, spill_keys=10**9)


def test_a_failing_child_leaves_the_figures_unchanged(resumed_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A child that cannot run (no interpreter) answers nothing: the caller folds the ledger itself."""
    expected = metrics_for_run(resumed_run, parallel=False).to_dict()
    monkeypatch.setattr(metric_child.sys, "executable", "/bin/false")
    child = LedgerChild(resumed_run, on_disk=False, spill_keys=10)
    try:
        assert child.result() is None
    finally:
        child.close()
    assert metrics_for_run(resumed_run, parallel=True).to_dict() == expected
