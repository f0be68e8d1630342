"""The command line: the demo, bad input as the unified error with exit 2, and nothing lost."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from batchlab.cli import main
from batchlab.examples import make_documents, write_documents


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "batchlab", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def error_of(stdout: str) -> dict[str, object]:
    payload = json.loads(stdout)
    assert set(payload["error"]) == {"code", "message", "details", "hints"}
    return payload["error"]


@pytest.fixture
def bad_inputs(tmp_path: Path) -> dict[str, Path]:
    """One file per kind of bad input the lesson's 400 case covers."""
    files = {
        "input_not_found": tmp_path / "missing.json",
        "invalid_json": tmp_path / "broken.json",
        "wrong_type": tmp_path / "types.json",
        "document_too_large": tmp_path / "huge.json",
        "invalid_utf8": tmp_path / "gbk.json",
    }
    files["invalid_json"].write_text('{"documents": [', encoding="utf-8")
    files["wrong_type"].write_text('{"documents": "all of them"}', encoding="utf-8")
    files["document_too_large"].write_text(json.dumps([{"id": "big", "content": "x" * 10_000_000}]), encoding="utf-8")
    files["invalid_utf8"].write_bytes('[{"id": "a", "content": "断点续传"}]'.encode("gbk"))
    return files


class TestBadInput:
    @pytest.mark.parametrize("code", ["input_not_found", "invalid_json", "wrong_type", "document_too_large",
                                      "invalid_utf8"])
    @pytest.mark.parametrize("verb", ["demo", "run", "validate"])
    def test_every_command_prints_the_unified_error_and_exits_2(
        self, verb: str, code: str, bad_inputs: dict[str, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        path = str(bad_inputs[code])
        argv = {"demo": ["demo", "--input", path, "--run-dir", str(tmp_path / "r")],
                "run": ["run", "--input", path, "--run-dir", str(tmp_path / "r")],
                "validate": ["validate", path]}[verb]
        assert main(argv) == 2
        assert error_of(capsys.readouterr().out)["code"] == code
        assert not (tmp_path / "r").exists()

    def test_a_usage_error_is_unified_too(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["demo", "--fault-rate", "3"]) == 2
        assert error_of(capsys.readouterr().out)["code"] == "usage_error"

    def test_bad_input_leaves_an_earlier_run_intact(self, reference_impl: Path, example_input_path: Path,
                                                    bad_inputs: dict[str, Path], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
        run_dir = tmp_path / "run"
        assert main(["run", "--input", str(example_input_path), "--run-dir", str(run_dir), "--impl",
                     str(reference_impl), "--latency-ms", "1"]) == 0
        before = {p.name: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
        assert main(["run", "--input", str(bad_inputs["invalid_json"]), "--run-dir", str(run_dir)]) == 2
        after = {p.name: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
        assert before == after

    def test_make_input_refuses_to_overwrite(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        out = tmp_path / "in.json"
        out.write_text("keep", encoding="utf-8")
        assert main(["make-input", "--docs", "10", "--out", str(out)]) == 2
        assert out.read_text(encoding="utf-8") == "keep"
        assert error_of(capsys.readouterr().out)["code"] == "output_exists"


class TestCommands:
    def test_demo_crashes_resumes_and_meets_every_threshold(self, tmp_path: Path) -> None:
        proc = run_cli("demo", "--json", "--run-dir", str(tmp_path / "demo"), "--latency-ms", "2")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        result = json.loads(proc.stdout)
        assert result["ok"] and result["crash"]["fired"]
        assert [p["outcome"] for p in result["passes"]] == ["killed", "ok"]
        assert all(t["ok"] for t in result["thresholds"].values())
        assert result["metrics"]["duplicate_rate"] == 0.0 and result["metrics"]["completion_rate"] == 1.0

    def test_demo_prints_a_table_against_thresholds(self, tmp_path: Path) -> None:
        proc = run_cli("demo", "--docs", "150", "--crash", "after_commit", "--run-dir", str(tmp_path / "d"),
                       "--latency-ms", "2")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "pass 1: killed" in proc.stdout and "pass 2: ok" in proc.stdout
        # The document committed right before the kill is healed from the sink (and with the reference's group commit,
        # those whose checkpoint marks the kill took): one or more recovered, none redone.
        assert re.search(r"recovered [1-9]", proc.stdout) and "all lesson thresholds met" in proc.stdout
        assert "pass 2" in proc.stderr  # the progress bars

    def test_run_twice_resumes_the_same_run_directory(self, reference_impl: Path, example_input_path: Path,
                                                      tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        common = ["--input", str(example_input_path), "--run-dir", str(tmp_path / "r"), "--impl",
                  str(reference_impl), "--latency-ms", "1"]
        assert main(["run", *common, "--crash", "after_commit", "--at", "20"]) == 0
        assert "pass 1: killed" in capsys.readouterr().out
        assert main(["run", *common]) == 0
        out = capsys.readouterr().out
        assert "pass 2: ok" in out and "100.00 %" in out

    def test_run_without_metrics_prints_the_pass_and_how_to_get_them(self, reference_impl: Path,
                                                                     example_input_path: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
        """`run --no-metrics` prints the pass and the metrics command, not the table; the run is the same."""
        run = tmp_path / "r"
        assert main(["run", "--input", str(example_input_path), "--run-dir", str(run), "--impl", str(reference_impl),
                     "--latency-ms", "0", "--no-metrics"]) == 0
        out = capsys.readouterr().out
        assert "pass 1: ok" in out and f"metrics: batchlab metrics {run}" in out and "%" not in out
        assert main(["metrics", str(run)]) == 0 and "100.00 %" in capsys.readouterr().out

    def test_a_rerun_neither_validates_the_input_again_nor_reads_the_ledger_from_the_start(
            self, reference_impl: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
            monkeypatch: pytest.MonkeyPatch) -> None:
        """The second `run` of a run directory trusts its worker's memo of the validated input (same size and time)
        and numbers its pass from the ledger's end: a no-op rerun of a large batch starts at once."""
        from batchlab import batchstream, ledger

        source = tmp_path / "in.jsonl"
        write_documents(source, make_documents(30, seed=1, min_bytes=60, max_bytes=200), format="jsonl")
        args = ["run", "--input", str(source), "--run-dir", str(tmp_path / "r"), "--impl", str(reference_impl),
                "--latency-ms", "0", "--no-metrics"]
        assert main(args) == 0 and "pass 1: ok" in capsys.readouterr().out

        def refuse(*_: Any, **__: Any) -> Any:
            raise AssertionError("read again")

        monkeypatch.setattr(batchstream, "_validate", refuse)
        monkeypatch.setattr(ledger, "iter_events", refuse)
        assert main(args) == 0 and "pass 2: ok" in capsys.readouterr().out
        source.touch()  # a changed file (its time) is validated again
        with pytest.raises(AssertionError, match="read again"):
            main(args)

    def test_validate_summarizes_the_example(self, example_input_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["validate", str(example_input_path)]) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["documents"] == 124 and summary["unique"] == 118
        assert summary["invalid"] == {"missing_id": 1, "wrong_type": 1, "empty_content": 1}

    @pytest.mark.parametrize("unbuffered", [False, True])
    def test_a_reader_that_leaves_early_gets_no_traceback(self, example_input_path: Path, unbuffered: bool) -> None:
        """`batchlab validate ... | head -0`: the pipe is closed before the kit writes; it exits 141, silently
        (buffered, the write fails only at the last flush; unbuffered, at the print itself)."""
        env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
        if unbuffered:
            env["PYTHONUNBUFFERED"] = "1"
        proc = subprocess.Popen([sys.executable, "-m", "batchlab.cli", "validate", str(example_input_path)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # the reader is gone before the first write
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 141
        assert "Traceback" not in err and "BrokenPipeError" not in err, err

    def test_make_input_writes_a_valid_seeded_batch(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        a, b = tmp_path / "a.json", tmp_path / "b.json"
        assert main(["make-input", "--docs", "1000", "--seed", "4", "--out", str(a), "--max-bytes", "2000"]) == 0
        assert main(["make-input", "--docs", "1000", "--seed", "4", "--out", str(b), "--max-bytes", "2000"]) == 0
        assert a.read_bytes() == b.read_bytes()
        assert len(json.loads(a.read_text(encoding="utf-8"))["documents"]) == 1000

    def test_release_check_passes_on_the_committed_skeleton(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["release", "--check"]) == 0


class TestOutages:
    def test_run_with_an_outage_window_meets_the_outage_and_still_commits_every_document(self, tmp_path: Path,
                                                                                       example_input_path: Path) -> None:
        """``--outage 0:1``: the ledger shows the service down then up, and the run ends with the thresholds met."""
        run_dir = tmp_path / "run"
        proc = run_cli("run", "--input", str(example_input_path), "--run-dir", str(run_dir), "--outage", "0:1",
                       "--fault-rate", "0")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        lines = [json.loads(line) for line in (run_dir / "ledger.jsonl").read_text(encoding="utf-8").splitlines()]
        assert [e["state"] for e in lines if e["ev"] == "outage"][:2] == ["down", "up"]
        assert json.loads((run_dir / "spec.json").read_text(encoding="utf-8"))["plan"]["outages"] == [[0.0, 1.0]]

    def test_no_breaker_and_call_timeout_reach_the_workers_config(self, tmp_path: Path,
                                                                  example_input_path: Path) -> None:
        """``--no-breaker --call-timeout 0.5``: the run's spec carries breaker_failures 0 and the deadline."""
        run_dir = tmp_path / "run"
        proc = run_cli("run", "--input", str(example_input_path), "--run-dir", str(run_dir), "--no-breaker",
                       "--call-timeout", "0.5", "--fault-rate", "0")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        config = json.loads((run_dir / "spec.json").read_text(encoding="utf-8"))["config"]
        assert (config["breaker_failures"], config["call_timeout"]) == (0, 0.5)

    @pytest.mark.parametrize("window", ["1", "a:b", "-1:2", "1:2:3"])
    def test_a_malformed_outage_window_is_a_usage_error(self, tmp_path: Path, window: str) -> None:
        proc = run_cli("run", "--run-dir", str(tmp_path / "run"), f"--outage={window}")
        assert proc.returncode == 2 and error_of(proc.stdout)["code"] == "usage_error"

    def test_the_switch_turns_on_and_off_in_a_run_directory_only(self, tmp_path: Path, example_input_path: Path) -> None:
        """``batchlab outage RUN on|off``: the switch file appears and goes; a folder that is no run is refused."""
        refused = run_cli("outage", str(tmp_path), "on")
        assert refused.returncode == 2 and error_of(refused.stdout)["code"] == "run_dir_not_found"
        run_dir = tmp_path / "run"
        assert run_cli("run", "--input", str(example_input_path), "--run-dir", str(run_dir)).returncode == 0
        assert "unreachable" in run_cli("outage", str(run_dir), "on").stdout
        assert (run_dir / "outage.switch").exists()
        assert "reachable" in run_cli("outage", str(run_dir), "off").stdout
        assert not (run_dir / "outage.switch").exists()
