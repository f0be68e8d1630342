"""后续标记待补 (backfill): ``batchlab backfill RUN_DIR`` on real run directories, and the metrics it moves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from batchlab.backfill import backfill_spec, healthy_plan
from batchlab.cli import main
from batchlab.contract import BatchConfig
from batchlab.examples import make_documents, write_input
from batchlab.faults import CRASH_DURING_CALL, CrashPlan, FaultPlan
from batchlab.ledger import Ev, read_events
from batchlab.metrics import metrics_for_run
from batchlab.rundir import RunDir
from batchlab.runlock import RunDirLock
from batchlab.runner import RunSpec, prepare, read_spec, run_pass
from batchlab.service import LatencyModel
from batchlab.sink import read_outputs

#: Documents whose every call fails for good in the run's own plan: they end degraded until a backfill.
BROKEN = ("doc-00002", "doc-00007", "doc-00011", "doc-00019")


def degraded_run(run_dir: Path, impl: Path, *, kill: bool = True) -> RunSpec:
    """A run of 30 documents: pass 1 killed during a call (if ``kill``), pass 2 resumed; 4 documents degraded."""
    source = write_input(run_dir.parent / f"{run_dir.name}.json", make_documents(30, seed=4, max_bytes=1500,
                                                                                 invalid=0, duplicates=0))
    spec = RunSpec(impl=impl, input=source, run_dir=run_dir, config=BatchConfig(concurrency=4),
                   plan=FaultPlan(seed=4, transient_rate=0.02, permanent_ids=BROKEN),
                   latency=LatencyModel(median_ms=2.0), timeout_s=120)
    prepare(spec, fresh=True)
    if kill:
        run_pass(spec, 1, CrashPlan(CRASH_DURING_CALL, at=40))
    run_pass(spec, 2 if kill else 1)
    return spec


@pytest.fixture
def degraded(tmp_path: Path, reference_impl: Path) -> RunSpec:
    return degraded_run(tmp_path / "run", reference_impl)


def error_of(stdout: str) -> dict[str, object]:
    payload = json.loads(stdout)
    assert set(payload["error"]) == {"code", "message", "details", "hints"}
    return dict(payload["error"])


class TestTheCommand:
    def test_backfill_upgrades_every_degraded_document_with_no_duplicate(
            self, degraded: RunSpec, capsys: pytest.CaptureFixture[str]) -> None:
        """After a kill and a resume, 4 documents are degraded; one backfill pass makes each full, nothing twice."""
        before = metrics_for_run(degraded.run_dir)
        assert before.committed_degraded == len(BROKEN) and before.completion_rate == 1.0
        spec_text = RunDir(degraded.run_dir).spec.read_text(encoding="utf-8")
        assert main(["backfill", str(degraded.run_dir), "--json"]) == 0
        said = json.loads(capsys.readouterr().out)
        assert (said["degraded_before"], said["upgraded"], said["degraded_after"], said["duplicates"]) == (4, 4, 0, 0)
        after = metrics_for_run(degraded.run_dir)
        assert after.upgraded == 4 and after.committed_degraded == 0 and after.duplicates == []
        assert after.completion_rate == 1.0 and after.duplicate_rate == 0.0
        assert {r.mode for r in read_outputs(RunDir(degraded.run_dir).sink)} == {"full"}
        last = after.passes[-1]
        assert (last.pass_no, last.upgraded, last.redone, last.hits) == (3, 4, 4, after.unique - 4)
        puts = [e for e in read_events(RunDir(degraded.run_dir).ledger) if e["ev"] == Ev.SINK_PUT and e["pass"] == 3]
        assert len(puts) == 4 and all(e["upgrade"] is True and e["mode"] == "full" for e in puts)
        report = last.report or {}
        assert report["upgraded"] == 4 and report["duplicate_executions"] == 0 and report["executed"] == 4
        assert RunDir(degraded.run_dir).spec.read_text(encoding="utf-8") == spec_text  # the run's own settings again

    def test_nothing_to_backfill_is_not_an_error_and_runs_no_pass(
            self, degraded: RunSpec, capsys: pytest.CaptureFixture[str]) -> None:
        """A second backfill finds nothing degraded: exit 0, "0 upgraded", and no pass is added to the ledger."""
        assert main(["backfill", str(degraded.run_dir)]) == 0
        capsys.readouterr()
        passes = len(metrics_for_run(degraded.run_dir).passes)
        assert main(["backfill", str(degraded.run_dir)]) == 0
        out = capsys.readouterr().out
        assert "nothing to backfill: 0 degraded documents" in out and "0 upgraded" in out
        assert len(metrics_for_run(degraded.run_dir).passes) == passes

    def test_a_running_batch_is_refused_as_busy_and_left_untouched(
            self, degraded: RunSpec, capsys: pytest.CaptureFixture[str]) -> None:
        """A run directory another process holds: run_dir_busy, exit 2, the ledger and the sink untouched."""
        ledger = RunDir(degraded.run_dir).ledger
        size = ledger.stat().st_size
        with RunDirLock(degraded.run_dir, role="a test's run").acquire(0.5):
            assert main(["backfill", str(degraded.run_dir), "--wait", "0.2"]) == 2
        assert error_of(capsys.readouterr().out)["code"] == "run_dir_busy"
        assert ledger.stat().st_size == size and metrics_for_run(degraded.run_dir).committed_degraded == 4

    def test_a_folder_that_is_not_a_run_is_refused(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A folder without spec.json: not_a_run, exit 2."""
        assert main(["backfill", str(tmp_path)]) == 2
        assert error_of(capsys.readouterr().out)["code"] == "not_a_run"

    def test_a_service_still_down_is_refused(self, degraded: RunSpec, capsys: pytest.CaptureFixture[str]) -> None:
        """The outage switch on: a backfill would only degrade again, so it is refused with the way out."""
        assert main(["outage", str(degraded.run_dir), "on"]) == 0
        capsys.readouterr()
        assert main(["backfill", str(degraded.run_dir)]) == 2
        error = error_of(capsys.readouterr().out)
        assert error["code"] == "service_down" and "outage" in str(error["hints"])
        assert metrics_for_run(degraded.run_dir).committed_degraded == 4


class TestTheSpec:
    def test_a_backfill_pass_runs_with_backfill_on_and_the_service_healthy(self, degraded: RunSpec) -> None:
        """The pass's spec: config.backfill on, the other settings kept, no permanent fault, transient faults kept."""
        spec = backfill_spec(read_spec(degraded.run_dir))
        assert spec.config.backfill and spec.config.concurrency == 4
        assert spec.plan.permanent_ids == () and spec.plan.transient_rate == 0.02 and spec.plan.seed == 4

    def test_healthy_means_no_outage_no_permanent_fault_no_stuck_call(self) -> None:
        """A healthy plan drops outages, permanent faults and stuck calls, and keeps transient faults."""
        plan = healthy_plan(FaultPlan(seed=1, transient_rate=0.03, permanent_rate=0.1, permanent_ids=("a",),
                                      stuck_rate=0.2, stuck_ids=("b",), outages=((0.0, 2.0),)))
        assert (plan.permanent_rate, plan.permanent_ids, plan.stuck_rate, plan.stuck_ids, plan.outages) == (
            0.0, (), 0.0, (), ())
        assert plan.transient_rate == 0.03


class TestHitRate:
    def test_a_resume_after_a_kill_reports_what_it_found_finished_against_what_it_redid(
            self, degraded: RunSpec) -> None:
        """检查点命中率: the resumed pass found every document committed before the kill and redid the rest."""
        events = read_events(RunDir(degraded.run_dir).ledger)
        committed_in_pass_1 = {e["ident"] for e in events if e["ev"] == Ev.SINK_PUT and e["pass"] == 1}
        metrics = metrics_for_run(degraded.run_dir)
        resumed = metrics.passes[1]
        assert 0 < len(committed_in_pass_1) < metrics.unique
        assert resumed.hits == len(committed_in_pass_1) and resumed.redone == metrics.unique - resumed.hits
        assert metrics.checkpoint_hit_rate == pytest.approx(len(committed_in_pass_1) / metrics.unique)
        assert metrics.passes[0].checkpoint_hit_rate is None  # a first pass looks nothing up
        report = resumed.report or {}
        assert report["checkpoint_hit_rate"] == pytest.approx(metrics.checkpoint_hit_rate)
        assert report["skipped"] + report["recovered"] == resumed.hits

    def test_a_run_without_a_resume_has_no_hit_rate(self, tmp_path: Path, reference_impl: Path) -> None:
        """One pass and no resume: the hit rate is None, never 0."""
        spec = degraded_run(tmp_path / "once", reference_impl, kill=False)
        metrics = metrics_for_run(spec.run_dir)
        assert metrics.checkpoint_hit_rate is None and metrics.summary()["checkpoint_hit_rate"] is None


def test_the_report_shows_the_hit_rate_and_the_upgrades(degraded: RunSpec, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """`batchlab report` after a backfill: the metric table, the pass table and the observability check carry both."""
    assert main(["backfill", str(degraded.run_dir)]) == 0
    assert main(["report", str(degraded.run_dir), "--out", str(tmp_path / "report")]) == 0
    capsys.readouterr()
    text = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    hits = metrics_for_run(degraded.run_dir).passes[-1].hits
    assert "| 补齐升级数（upgraded by backfill） | 4 |" in text
    assert f"| {hits} / 4（" in text  # the backfill pass found every other document finished and redid 4
    assert "| 检查点命中率（checkpoint hit rate） |" in text and "⚠ 不一致" not in text
    assert f"batchlab backfill {degraded.run_dir}" in text
