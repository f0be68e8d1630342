"""batchlab.teach.chaos_workers: a fleet under random worker SIGKILLs and one zombie, checked after each event."""

from __future__ import annotations

from pathlib import Path

from batchlab.contract import BatchConfig
from batchlab.examples import make_documents, write_input
from batchlab.paths import solution_module
from batchlab.runspec import RunSpec
from batchlab.service import LatencyModel
from batchlab.teach.chaos_workers import run_chaos_workers


def test_kills_and_a_zombie_lose_nothing_and_no_stale_token_commits(tmp_path: Path) -> None:
    """Two worker kills and one zombie taken over: every document committed, no stale commit, redo within bound."""
    input_path = write_input(tmp_path / "input.json", make_documents(400, seed=15, max_bytes=2000))
    spec = RunSpec(impl=solution_module(), input=input_path, run_dir=tmp_path / "run",
                   config=BatchConfig(concurrency=2), latency=LatencyModel(median_ms=30.0))
    lines: list[str] = []
    result = run_chaos_workers(spec, workers=3, kills=2, lease_s=1.5, min_s=0.3, max_s=0.8, seed=3,
                               on_line=lines.append)
    assert result.ok, result.lines()
    assert result.final is not None and result.final.stale_commits == [] and result.final.lost == []
    assert result.final.extra_puts <= result.bound
    assert any(e["what"].startswith("SIGKILL") for e in result.events), result.lines()
    zombie = [e["what"] for e in result.events if e["what"].startswith("zombie")]
    assert zombie and "taken over" in zombie[0], result.lines()


def test_a_batch_stopped_by_the_time_limit_says_so_not_that_documents_were_lost(tmp_path: Path) -> None:
    """A fleet cut off by ``timeout_s`` mid-batch reports the time limit and the documents not committed yet."""
    input_path = write_input(tmp_path / "input.json", make_documents(400, seed=15, max_bytes=2000))
    spec = RunSpec(impl=solution_module(), input=input_path, run_dir=tmp_path / "run",
                   config=BatchConfig(concurrency=1), latency=LatencyModel(median_ms=200.0))
    result = run_chaos_workers(spec, workers=2, kills=1, lease_s=1.0, min_s=0.1, max_s=0.2, seed=3, timeout_s=1.0)
    assert not result.ok and result.final is not None and result.final.lost, result.lines()
    assert any("did not finish within 1 s" in p and "not committed yet" in p for p in result.problems), result.problems
    assert not any("never committed" in p for p in result.problems), result.problems


def test_a_zombie_nobody_takes_over_is_frozen_again_later_up_to_three_times(tmp_path: Path) -> None:
    """One worker, no kills: its frozen shard cannot be taken over; the tool tries the zombie three times, says so."""
    input_path = write_input(tmp_path / "input.json", make_documents(400, seed=15, max_bytes=2000))
    spec = RunSpec(impl=solution_module(), input=input_path, run_dir=tmp_path / "run",
                   config=BatchConfig(concurrency=2), latency=LatencyModel(median_ms=30.0))
    result = run_chaos_workers(spec, workers=1, kills=0, lease_s=0.3, min_s=0.2, max_s=0.4, seed=3)
    zombies = [e["what"] for e in result.events if e["what"].startswith("zombie")]
    assert len(zombies) == 3 and all("NOT taken" in z for z in zombies), result.lines()
    assert result.final is not None and result.final.lost == [] and result.final.stale_commits == [], result.lines()
