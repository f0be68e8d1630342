"""``batchlab bench --scale`` measures a real run of the kit: every field of its table comes from that run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from batchlab.cli import main
from batchlab.paths import solution_module
from batchlab.teach.bench_scale import format_scale

pytestmark = pytest.mark.slow


def test_a_tiny_scale_bench_reports_what_its_runs_did(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """At N = 200: all committed once, a no-op rerun with no call, a kill at 99 % resumed, sizes and memory real."""
    if not solution_module().exists():
        pytest.skip("needs the reference solution, which a student distribution leaves out")
    code = main(["bench", "--scale", "--sizes", "200", "--json", "--keep", str(tmp_path / "work")])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    (row,) = result["rows"]
    assert row["documents"] == 200 and 190 <= row["unique"] <= 200
    assert row["first_pass_committed"] == row["unique"]  # zero-latency service, no faults: every document at once
    assert row["noop_rerun_calls"] == 0
    assert row["kill_at"] == math.floor(0.99 * row["unique"])
    assert row["resume_first_call_s"] is not None and row["resume_first_call_s"] >= 0
    for name in ("rss_worker", "rss_cli", "rss_largest", "metrics_rss", "noop_rss_worker", "noop_rss_cli",
                 "noop_rss_largest", "resume_rss_largest"):
        assert 10e6 < row[name] < 2e9, name  # a Python process with the kit imported, not a timing
    assert row["rss_largest"] >= max(row["rss_worker"], row["rss_cli"]) * 0.8
    run = tmp_path / "work" / "n200" / "run-200"
    assert 0 < row["ledger_bytes"] < (run / "ledger.jsonl").stat().st_size  # measured before the rerun's lines
    assert row["checkpoint_bytes"] > 0 and row["sink_bytes"] > 0 and row["input_bytes"] > 200 * 200
    assert (tmp_path / "work" / "n200" / "killed-200" / "ledger.jsonl").exists()
    table = format_scale(result)
    assert "| 200 |" in table and "load average" in table


def test_a_one_pass_scale_bench_kills_its_first_pass_at_99_percent_and_measures_the_rest_on_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With --one-pass: one run directory, its first pass killed at 99 % of the unique documents, then the resume
    (its first call timed), a no-op rerun with no call, and the metrics, all on it."""
    if not solution_module().exists():
        pytest.skip("needs the reference solution, which a student distribution leaves out")
    assert main(["bench", "--scale", "--sizes", "200", "--one-pass", "--json", "--keep", str(tmp_path / "w")]) == 0
    (row,) = json.loads(capsys.readouterr().out)["rows"]
    assert row["one_pass"] and row["kill_at"] == math.floor(0.99 * row["unique"])
    assert row["first_pass_committed"] == row["kill_at"] and row["noop_rerun_calls"] == 0
    assert row["resume_first_call_s"] is not None and 0 < row["noop_pass_s"] < row["noop_rerun_s"]
    assert not (tmp_path / "w" / "n200" / "killed-200").exists()
    assert 10e6 < row["rss_worker"] < 2e9 and 10e6 < row["metrics_rss"] < 2e9
