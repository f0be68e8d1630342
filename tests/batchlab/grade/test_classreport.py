"""The class report and the gradebook, from students' results files (no grading: results in the grader's format)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from batchlab.grade.classreport import write_class_report
from batchlab.grade.gradebook import gradebook_csv, zero_result

#: Feedback as the grader prints it (grader/analysis.py's rule lines, acceptance's FAILED check lines).
RECOVERED = ("report vs ledger: recovered: report says 0, ledger says at least 1\n"
             "recovered-counts-healed-keys: recovered 只数从 sink 修复（heal）的键。")
PROGRESS = ("progress: 1 of 14 documents were never reported in their final state: st-6 (done)\n"
            "progress-on-every-state-change: 每次状态变化都要通过 progress 报告。")
SCENARIO = ("scenario crash_after_commit: ...\n"
            "FAILED report agrees with ledger (1 pts): report vs ledger: pass 2: recovered: report says 0\n"
            "  recovered-counts-healed-keys: recovered 只数从 sink 修复（heal）的键。\n"
            "ok     exactly-once: exactly-once: 118 documents, none committed twice")


def result(tests: list[tuple[str, str, float, float, str]]) -> dict[str, Any]:
    """A graded result with (number, tag, score, max, output) tests."""
    rows = [{"number": n, "name": f"test {n}", "score": s, "max_score": m, "output": out,
             "status": "passed" if s == m else "failed", **({"tags": [tag]} if tag else {})}
            for n, tag, s, m, out in tests]
    return {"score": sum(r["score"] for r in rows), "max_score": sum(r["max_score"] for r in rows), "tests": rows,
            "extra_data": {"grade_all": {"status": "graded", "reason": None, "sha256": "x", "duration_s": 1.0}}}


def test_the_report_ranks_broken_invariants_by_how_many_students_broke_them(tmp_path: Path) -> None:
    """Two students break recovered-counts-healed-keys (once each, however many tests say it), one breaks progress."""
    results = {
        "ann": result([("05.6", "resume", 0, 2, PROGRESS), ("06.4", "metrics", 0, 2, RECOVERED),
                       ("A.4", "", 4, 5, SCENARIO)]),
        "ben": result([("05.6", "resume", 2, 2, ""), ("06.4", "metrics", 0, 2, RECOVERED), ("A.4", "", 5, 5, "")]),
        "cat": result([("05.6", "resume", 2, 2, ""), ("06.4", "metrics", 2, 2, ""), ("A.4", "", 5, 5, "")]),
        "dan": zero_result(status="unreadable", reason="document_processor.py is empty", sha256=None),
    }
    report = write_class_report(tmp_path, results).read_text(encoding="utf-8")
    assert "| `recovered-counts-healed-keys` | 2 | ann, ben |" in report
    assert "| `progress-on-every-state-change` | 1 | ann |" in report
    assert "| `report agrees with ledger` | 1 | ann |" in report
    assert "exactly-once" not in report.split("scenario checks")[1]  # a passed check is not a failure
    assert "| 06.4 | test 06.4 | 1/3 | 33 % |" in report
    assert "| dan | unreadable | document_processor.py is empty |" in report
    assert (tmp_path / "plots" / "steps.png").stat().st_size > 0


def test_the_gradebook_has_one_row_per_student_with_every_tests_points(tmp_path: Path) -> None:
    """Rows sorted by id; step tests before scenarios; an unreadable row has 0 everywhere and the class's max."""
    results = {
        "zoe": result([("A.1", "", 6, 6, ""), ("01.2", "checkpoint", 3, 3, ""), ("01.10", "checkpoint", 1, 2, "")]),
        "amy": zero_result(status="unreadable", reason="not a readable zip", sha256=None),
    }
    rows = list(csv.reader(io.StringIO(gradebook_csv(results))))
    assert rows[0] == ["student", "status", "total", "max", "reason", "01.2", "01.10", "A.1"]
    assert rows[1] == ["amy", "unreadable", "0", "11", "not a readable zip", "0", "0", "0"]
    assert rows[2] == ["zoe", "graded", "10", "11", "", "3", "1", "6"]


def test_an_unfinished_or_broken_grader_results_file_is_not_taken_for_a_grade(tmp_path: Path) -> None:
    """A placeholder marked unfinished (a grader killed mid-run), bad JSON or no tests: no grade is read from it."""
    from batchlab.grade.gradebook import read_grader_results

    cases = {"unfinished": {"score": 122, "tests": [], "extra_data": {"unfinished": True}},
             "notests": {"score": 122}, "finished": {"score": 8, "tests": [], "extra_data": {}}}
    for name, data in cases.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(data), encoding="utf-8")
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    assert read_grader_results(tmp_path / "unfinished.json") is None
    assert read_grader_results(tmp_path / "notests.json") is None
    assert read_grader_results(tmp_path / "bad.json") is None
    assert read_grader_results(tmp_path / "missing.json") is None
    assert read_grader_results(tmp_path / "finished.json") == cases["finished"]
