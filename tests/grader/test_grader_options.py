"""The grader's command line: --step, single files, defaults, and a results file whatever goes wrong."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from batchlab.paths import solution_module
from grader_runs import GRADER_DIR, PYTEST_ARGS, ROOT, run_grader


def test_step_option_runs_only_that_step(tmp_path: Path) -> None:
    """--step 02 runs the four key tests and leaves the scenarios out (``--step idempotency``, the same step by its
    name, is the distribution test's run below: one grader run for each spelling, not two)."""
    run = run_grader(solution_module(), tmp_path / "results.json", "--step", "02")
    data = run.results
    assert run.returncode == 0, run.stdout[-1500:]
    assert [t["number"] for t in data["tests"]] == ["02.1", "02.2", "02.3", "02.4"]
    assert data["extra_data"]["step"] == "idempotency"
    assert "4 public checks of step idempotency passed" in run.stdout
    assert "hidden scenarios run at grading" in run.stdout


def test_single_test_file_accepts_the_grader_options(tmp_path: Path) -> None:
    """pytest grader/test_02_idempotency.py --impl ... works: the grader's conftest is an initial conftest."""
    run = run_grader(solution_module(), tmp_path / "results.json", grader=GRADER_DIR / "test_02_idempotency.py")
    assert run.returncode == 0, run.stdout[-1500:] + run.stderr[-1500:]
    assert len(run.results["tests"]) == 4


def test_results_go_to_grader_results_under_the_current_directory(tmp_path: Path) -> None:
    """Without --results, results.json is written to ./grader-results/ of the directory pytest runs in."""
    proc = subprocess.run([sys.executable, "-m", "pytest", str(GRADER_DIR), "--impl", str(solution_module()),
                           "--step", "backoff", "-k", "exponentially", *PYTEST_ARGS],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout[-1500:]
    data = json.loads((tmp_path / "grader-results" / "results.json").read_text(encoding="utf-8"))
    assert data["score"] == data["max_score"] == 2


def test_bare_pytest_does_not_collect_the_grader(tmp_path: Path) -> None:
    """The kit's own pytest (testpaths = tests) never runs the grader's tests directly.

    Collected in a copy of the kit's layout (its ``pyproject.toml``, its ``grader/``) whose ``tests/`` holds one
    test: importing the suite's 150 modules would prove nothing more and cost half a minute.
    """
    kit = tmp_path / "kit"
    shutil.copytree(GRADER_DIR, kit / "grader", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "pyproject.toml", kit / "pyproject.toml")
    (kit / "tests").mkdir()
    (kit / "tests" / "test_the_kit.py").write_text("def test_the_kit_is_collected():\n    pass\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", *PYTEST_ARGS],
                          capture_output=True, text=True, cwd=kit, timeout=300)
    assert "tests/test_the_kit.py" in proc.stdout, proc.stdout[-1500:] + proc.stderr[-1500:]
    assert "grader/test_0" not in proc.stdout and "grader/test_acceptance" not in proc.stdout


def _grader_copy(tmp_path: Path, extra: str, name: str) -> Path:
    copy = tmp_path / "kit" / "grader"
    shutil.copytree(GRADER_DIR, copy, ignore=shutil.ignore_patterns("__pycache__", "hidden"))
    (copy / name).write_text(extra, encoding="utf-8")
    return copy


def test_collection_error_still_writes_results_with_a_grader_error(tmp_path: Path) -> None:
    """A grader module that cannot be imported is reported as a grader error, and results.json is written."""
    copy = _grader_copy(tmp_path, "import grader_module_that_is_missing  # a grader bug\n", "test_zz_broken.py")
    run = run_grader(solution_module(), tmp_path / "out" / "results.json", cwd=tmp_path / "kit", grader=copy)
    assert run.returncode != 0
    data = run.results
    assert data["score"] == 0
    assert any("test_zz_broken" in e and "collection" in e for e in data["extra_data"]["grader_errors"])


def test_grader_bug_in_a_test_is_a_grader_error_not_a_student_error(tmp_path: Path) -> None:
    """An exception in grader code fails that test as GRADER ERROR, listed apart; other tests still count."""
    bug = ('import pytest\n\n\n@pytest.mark.points(1)\n@pytest.mark.step("idempotency")\n'
           'def test_zz_bug(grade):\n    """a grader bug"""\n    return {}["missing"]\n')
    copy = _grader_copy(tmp_path, bug, "test_zz_bug.py")
    run = run_grader(solution_module(), tmp_path / "out" / "results.json", "--step", "idempotency",
                     cwd=tmp_path / "kit", grader=copy)
    data = run.results
    bugged = [t for t in data["tests"] if t["name"].endswith("a grader bug")]
    assert len(bugged) == 1 and bugged[0]["output"].startswith("GRADER ERROR")
    assert len(data["extra_data"]["grader_errors"]) == 1 and "KeyError" in data["extra_data"]["grader_errors"][0]
    assert data["score"] == 8  # the four real key tests still give their points


def test_batchlab_grade_runs_the_grader(tmp_path: Path) -> None:
    """batchlab grade --impl ... --step ... --results ... is the same grader behind a CLI verb."""
    results = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, "-m", "batchlab", "grade", "--impl", str(solution_module()), "--step",
                           "checkpoint", "--results", str(results)], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-1500:]
    data = json.loads(results.read_text(encoding="utf-8"))
    assert data["extra_data"]["step"] == "checkpoint" and data["score"] == data["max_score"] == 17


def test_batchlab_grade_refuses_a_missing_file_with_the_unified_error(tmp_path: Path) -> None:
    """A missing --impl exits 2 with {"error": {code, message, details, hints}} and grades nothing."""
    proc = subprocess.run([sys.executable, "-m", "batchlab", "grade", "--impl", str(tmp_path / "nope.py")],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2
    error = json.loads(proc.stdout)["error"]
    assert error["code"] == "file_not_found" and error["hints"]
    assert not (tmp_path / "grader-results").exists()


def test_student_distribution_has_no_hidden_scenarios_and_still_grades(tmp_path: Path) -> None:
    """batchlab release --out leaves grader/hidden out; the distributed grader grades the distributed skeleton."""
    out = tmp_path / "dist"
    proc = subprocess.run([sys.executable, "-m", "batchlab", "release", "--out", str(out)], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (out / "grader" / "conftest.py").is_file() and not (out / "grader" / "hidden").exists()
    run = run_grader(out / "labs/student/lab03/src/services/document_processor.py", tmp_path / "r" / "results.json",
                     "--step", "idempotency", cwd=out, grader=out / "grader")
    data = run.results
    assert data["score"] == 0 and data["extra_data"]["hidden_scenarios"] >= 1 and not data["extra_data"]["grader_errors"]
    assert [t["number"] for t in data["tests"]] == ["02.1", "02.2", "02.3", "02.4"]  # --step by name: that step only
    assert data["extra_data"]["step"] == "idempotency"
    assert all("TODO step 02" in t["output"] for t in data["tests"])


def test_thresholds_option_changes_the_bounds(tmp_path: Path) -> None:
    """--thresholds FILE replaces the kit's thresholds: an impossible completion bound fails only that check."""
    strict = tmp_path / "strict.toml"
    strict.write_text('[completion_rate]\nmin = 1.5\nlabel = "completion rate"\n\n[duplicate_rate]\nmax = 0.01\n\n'
                      '[fail_rate]\nmax = 0.05\n\n[resume_time_s]\nmax = 60.0\n', encoding="utf-8")
    run = run_grader(solution_module(), tmp_path / "results.json", "--thresholds", str(strict), "-k", "clean_run")
    data = run.results
    (test,) = data["tests"]
    assert test["score"] == test["max_score"] - 1
    assert "FAILED completion (1 pts): completion: 100.00 % < 150 %" in test["output"]
    assert "replay: python -m pytest" in test["output"]
    assert data["extra_data"]["thresholds"]["completion_rate"] == ">= 150 %"


def test_grader_never_removes_folders_it_did_not_make(tmp_path: Path) -> None:
    """A runs/ folder of the user beside the results survives two grader runs; the grader uses runs-grader/."""
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "demo-keep.txt").write_text("mine", encoding="utf-8")
    for _ in range(2):
        run = run_grader(solution_module(), tmp_path / "results.json", "-k", "bad_batch_input")
        assert run.returncode == 0, run.stdout[-1500:]
    assert (tmp_path / "runs" / "demo-keep.txt").read_text(encoding="utf-8") == "mine"
    assert (tmp_path / "runs-grader" / "bad_batch_input" / "ledger.jsonl").is_file()
    assert (tmp_path / "metrics" / "bad_batch_input.json").is_file()
