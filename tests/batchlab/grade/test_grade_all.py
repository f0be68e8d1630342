"""``batchlab grade-all``: real grading children on a small class (the grader's step 02, about a second each)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from batchlab.paths import kit_root

from .conftest import FAST, broken_key_source, bwrap_unusable, reference_source, skeleton_source, unreadable_entries

pytestmark = pytest.mark.slow


def grade_all(subs: Path, out: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "batchlab", "grade-all", str(subs), "--out", str(out), *args],
                          capture_output=True, text=True, timeout=timeout)


def gradebook(out: Path) -> dict[str, dict[str, str]]:
    with (out / "gradebook.csv").open(encoding="utf-8") as fh:
        return {row["student"]: row for row in csv.DictReader(fh)}


def leftovers(out: Path) -> list[psutil.Process]:
    """Live processes whose command line names ``out`` (grading children and what they started)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] != psutil.STATUS_ZOMBIE and str(out) in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    """One grade-all run shared by the tests below: three gradable submissions and every unreadable kind."""
    base = tmp_path_factory.mktemp("class")
    subs = base / "submissions"
    subs.mkdir()
    (subs / "ref.py").write_text(reference_source(), encoding="utf-8")
    (subs / "skel").mkdir()
    (subs / "skel" / "document_processor.py").write_text(skeleton_source(), encoding="utf-8")
    (subs / "nocase.py").write_text(broken_key_source(), encoding="utf-8")
    unreadable_entries(subs)
    out = base / "out"
    return subs, out, grade_all(subs, out, "--jobs", "2", "--grader-args", FAST)


def test_gradebook_scores_equal_the_grader_run_on_each_file_alone(
        graded_class: tuple[Path, Path, subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    """Every graded student's total and per-test points are what `pytest grader --impl FILE` gives that file."""
    subs, out, proc = graded_class
    assert proc.returncode == 0, proc.stderr
    book = gradebook(out)
    for student in ("ref", "skel", "nocase"):
        impl = subs / f"{student}.py" if student != "skel" else subs / "skel" / "document_processor.py"
        results = tmp_path / student / "results.json"
        subprocess.run([sys.executable, "-m", "pytest", str(kit_root() / "grader"), "-q", "-p", "no:cacheprovider",
                        "-p", "no:nbval", "--impl", str(impl), "--results", str(results), *FAST.split()],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300)
        alone: dict[str, Any] = json.loads(results.read_text(encoding="utf-8"))
        row = book[student]
        assert row["status"] == "graded"
        assert float(row["total"]) == alone["score"] and float(row["max"]) == alone["max_score"]
        assert {t["number"]: float(row[t["number"]]) for t in alone["tests"]} == \
            {t["number"]: t["score"] for t in alone["tests"]}
    assert float(book["ref"]["total"]) == float(book["ref"]["max"]) > float(book["nocase"]["total"]) > 0
    assert float(book["skel"]["total"]) == 0
    assert "[3/3]" in proc.stderr and "ETA" in proc.stderr


def test_unreadable_submissions_get_a_zero_row_with_the_reason(
        graded_class: tuple[Path, Path, subprocess.CompletedProcess[str]]) -> None:
    """Empty, binary, bad or traversing zips, empty folders, symlinks: rows with 0 and the reason, also in the report."""
    _, out, proc = graded_class
    assert proc.returncode == 0, proc.stderr
    book = gradebook(out)
    report = (out / "class-report.md").read_text(encoding="utf-8")
    for student in ("empty", "binary", "badzip", "nomodule", "traversal", "emptyfolder", "link"):
        assert book[student]["status"] == "unreadable" and float(book[student]["total"]) == 0
        assert book[student]["reason"] and book[student]["reason"] in report
    assert list(book) == sorted(book)


def test_the_class_report_has_pass_rates_broken_invariants_and_plots(
        graded_class: tuple[Path, Path, subprocess.CompletedProcess[str]]) -> None:
    """The report gives 02.2's pass rate (1 of 3: only the reference case-folds ids) and links three real PNGs."""
    _, out, _ = graded_class
    report = (out / "class-report.md").read_text(encoding="utf-8")
    assert "| 02.2 |" in report and "1/3 | 33 % |" in report
    assert "最常被破坏的不变量" in report
    for name in ("score-histogram.png", "steps.png", "steps-distribution.png"):
        assert f"plots/{name}" in report
        assert (out / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for student in ("ref", "skel", "nocase"):
        assert (out / "students" / student / "feedback.txt").read_text(encoding="utf-8").strip()


def test_a_submission_that_hangs_costs_itself_only(tmp_path: Path) -> None:
    """A module that hangs at import scores 0 as `timeout` after --timeout; the reference beside it is graded."""
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "hang.py").write_text("import time\ntime.sleep(3600)\n", encoding="utf-8")
    (subs / "ref.py").write_text(reference_source(), encoding="utf-8")
    # 25 s: far above the reference's second or two, even on a loaded machine.
    proc = grade_all(subs, tmp_path / "out", "--timeout", "25", "--grader-args", FAST)
    assert proc.returncode == 0, proc.stderr
    book = gradebook(tmp_path / "out")
    assert book["hang"]["status"] == "timeout" and float(book["hang"]["total"]) == 0
    assert book["ref"]["status"] == "graded" and float(book["ref"]["total"]) == float(book["ref"]["max"]) > 0
    assert not leftovers(tmp_path / "out")


def test_a_submission_that_kills_its_grader_scores_zero_and_the_class_goes_on(tmp_path: Path) -> None:
    """A module that SIGKILLs the process importing it, and that process's parent: a 0 row, the reference graded."""
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "killer.py").write_text("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n"
                                    "os.kill(os.getpid(), signal.SIGKILL)\n", encoding="utf-8")
    (subs / "ref.py").write_text(reference_source(), encoding="utf-8")
    proc = grade_all(subs, tmp_path / "out", "--grader-args", FAST)
    assert proc.returncode == 0, proc.stderr
    book = gradebook(tmp_path / "out")
    assert float(book["killer"]["total"]) == 0 and book["killer"]["status"] in ("crashed", "graded")
    assert book["ref"]["status"] == "graded" and float(book["ref"]["total"]) == float(book["ref"]["max"]) > 0


def test_relative_folders_are_graded_like_absolute_ones(tmp_path: Path) -> None:
    """``grade-all subs --out out`` from the class's folder: each child runs in its own work folder, and still
    finds its module (the paths are made absolute once)."""
    (tmp_path / "subs").mkdir()
    (tmp_path / "subs" / "ref.py").write_text(reference_source(), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "batchlab", "grade-all", "subs", "--out", "out", "--grader-args",
                           FAST], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    book = gradebook(tmp_path / "out")
    assert book["ref"]["status"] == "graded" and float(book["ref"]["total"]) == float(book["ref"]["max"]) > 0


@pytest.fixture
def outside_tmp() -> Iterator[Path]:
    """A temporary folder outside /tmp (the sandbox gives every child a private /tmp, which would hide a class
    kept there anyway: a TA's class folder is elsewhere)."""
    base = Path("/var/tmp")
    if not (base.is_dir() and os.access(base, os.W_OK)):
        pytest.skip("/var/tmp is not a writable folder here")
    with tempfile.TemporaryDirectory(dir=base, prefix="batchlab-grade-test-") as folder:
        yield Path(folder)


@pytest.mark.skipif(bwrap_unusable() is not None, reason=str(bwrap_unusable()))
def test_in_the_sandbox_a_submission_sees_no_other_student(outside_tmp: Path) -> None:
    """A submission that refuses to work when it can see the class (the submissions, another student's work
    folder) gets full marks: in the grader's sandbox it sees neither."""
    subs, out = outside_tmp / "subs", outside_tmp / "out"
    subs.mkdir()
    (subs / "aaa.py").write_text(reference_source(), encoding="utf-8")
    spy = (f"\nimport os\nfor _p in ({str(subs / 'aaa.py')!r}, {str(out / 'work' / 'aaa')!r}):\n"
           "    if os.path.exists(_p):\n        raise SystemExit(f'I can see {_p}')\n")
    (subs / "spy.py").write_text(reference_source() + spy, encoding="utf-8")
    proc = grade_all(subs, out, "--jobs", "1", "--grader-args", FAST)
    assert proc.returncode == 0, proc.stderr
    book = gradebook(out)
    assert float(book["spy"]["total"]) == float(book["spy"]["max"]) == float(book["aaa"]["total"]) > 0, book["spy"]


def test_a_run_killed_halfway_resumes_with_only_the_submissions_left(tmp_path: Path) -> None:
    """SIGKILL grade-all after its first result: no grading child outlives it; started again, it grades only the rest."""
    subs = tmp_path / "subs"
    subs.mkdir()
    for name in ("a", "b", "c", "d"):
        (subs / f"{name}.py").write_text(reference_source(), encoding="utf-8")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "batchlab", "grade-all", str(subs), "--out", str(out), "--jobs", "1",
           "--grader-args", FAST]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list((out / "students").glob("*/results.json")) and time.monotonic() < deadline:
        assert proc.poll() is None, "grade-all ended before it could be killed"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30
    while leftovers(out) and time.monotonic() < deadline:  # the kernel's die-with-parent signal is asynchronous
        time.sleep(0.1)
    assert not leftovers(out), "a grading child outlived the killed grade-all"
    first = {p.parent.name: p.stat().st_mtime_ns for p in (out / "students").glob("*/results.json")}
    assert 1 <= len(first) < 4
    again = grade_all(subs, out, "--jobs", "2", "--grader-args", FAST)
    assert again.returncode == 0, again.stderr
    assert f"{4 - len(first)} to grade, {len(first)} already graded" in again.stderr
    for student, mtime in first.items():
        assert (out / "students" / student / "results.json").stat().st_mtime_ns == mtime
    book = gradebook(out)
    assert all(float(book[s]["total"]) == float(book[s]["max"]) > 0 for s in "abcd")


@pytest.mark.parametrize(("args", "code"), [
    (["{missing}", "--out", "{out}"], "submissions_not_found"),
    (["{subs}", "--out", "{busy}"], "out_not_empty"),
    (["{subs}", "--out", "{out}", "--jobs", "0"], "usage_error"),
], ids=["no-submissions-folder", "foreign-out-folder", "zero-jobs"])
def test_bad_arguments_give_the_unified_error_and_exit_2(tmp_path: Path, args: list[str], code: str) -> None:
    """A missing submissions folder, a non-empty foreign --out or --jobs 0: exit 2, the unified error, no output."""
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "a.py").write_text("x = 1\n", encoding="utf-8")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "thesis.tex").write_text("keep me", encoding="utf-8")
    paths = {"missing": tmp_path / "nope", "subs": subs, "out": tmp_path / "out", "busy": busy}
    proc = subprocess.run([sys.executable, "-m", "batchlab", "grade-all", *(a.format(**paths) for a in args)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert json.loads(proc.stdout or proc.stderr)["error"]["code"] == code
    assert not (tmp_path / "out").exists() and sorted(p.name for p in busy.iterdir()) == ["thesis.tex"]
