"""Each student's result file and the class's ``gradebook.csv``.

A student's ``students/<id>/results.json`` is the grader's own results (Gradescope format) with
``extra_data.grade_all`` added: status (``graded``, ``timeout``, ``crashed``, ``unreadable``), the reason when
not graded, the submission's sha256 and the grading's duration. It is written last and atomically (a
temporary file, then ``os.replace``), after the feedback: a file that exists is a finished grading, which is
how a restarted ``grade-all`` knows what is left (the lesson's checkpoint, applied to grading).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

RESULTS_NAME = "results.json"
FEEDBACK_NAME = "feedback.txt"
STATUSES = ("graded", "timeout", "crashed", "unreadable")


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` so that ``path`` is either the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def student_dir(out: Path, student: str) -> Path:
    return out / "students" / student


def load_result(out: Path, student: str) -> dict[str, Any] | None:
    """A student's finished result, or None when there is none (or it cannot be parsed: graded again)."""
    path = student_dir(out, student) / RESULTS_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("extra_data", {}).get("grade_all"), dict):
        return None
    return data


def save_result(out: Path, student: str, data: Mapping[str, Any], feedback: str) -> None:
    """Feedback first, results last: the results file is the "done" mark."""
    folder = student_dir(out, student)
    write_atomic(folder / FEEDBACK_NAME, feedback)
    write_atomic(folder / RESULTS_NAME, json.dumps(data, ensure_ascii=False, indent=2, default=str))


def zero_result(*, status: str, reason: str, sha256: str | None, duration_s: float = 0.0,
                tests: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A result worth 0 with the reason (unreadable, timed out, crashed), in the grader's format."""
    return {"score": 0.0, "max_score": 0.0, "execution_time": round(duration_s, 2), "output": reason,
            "tests": tests or [],
            "extra_data": {"grade_all": {"status": status, "reason": reason, "sha256": sha256,
                                         "duration_s": round(duration_s, 2)}}}


def read_grader_results(path: Path) -> dict[str, Any] | None:
    """The grader's finished results, or None: missing, unparsable, or marked ``extra_data.unfinished``
    (a grader that writes a placeholder at its start and was killed before its end leaves one)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("tests"), list):
        return None
    extra = data.setdefault("extra_data", {})
    if not isinstance(extra, dict) or extra.get("unfinished"):
        return None
    return data


def test_key(number: str) -> tuple[int, str, int]:
    """Step tests (``01.1``) first, then public (``A.k``) and hidden (``H.k``) scenarios, each in order."""
    head, _, tail = number.partition(".")
    return (0 if head.isdigit() else 1, head, int(tail) if tail.isdigit() else 0)


def test_columns(results: Iterable[Mapping[str, Any]]) -> tuple[list[str], dict[str, str], float]:
    """Every test number seen, sorted; each number's name; the usual maximum score (the most common one)."""
    names: dict[str, str] = {}
    maxima: dict[float, int] = {}
    for data in results:
        for test in data.get("tests", []):
            names.setdefault(str(test.get("number")), str(test.get("name", "")))
        if data["extra_data"]["grade_all"]["status"] == "graded":
            value = float(data.get("max_score", 0.0))
            maxima[value] = maxima.get(value, 0) + 1
    usual = max(maxima, key=lambda v: (maxima[v], v)) if maxima else 0.0
    return sorted(names, key=test_key), names, usual


def gradebook_csv(results: Mapping[str, Mapping[str, Any]]) -> str:
    """One row per student, sorted by id: status, total, max, reason, then every test's points."""
    numbers, _, usual = test_columns(results.values())
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["student", "status", "total", "max", "reason", *numbers])
    for student in sorted(results):
        data = results[student]
        meta = data["extra_data"]["grade_all"]
        points = {str(t.get("number")): t.get("score", 0) for t in data.get("tests", [])}
        maximum = data.get("max_score") if meta["status"] == "graded" else usual
        writer.writerow([student, meta["status"], _num(data.get("score", 0.0)), _num(maximum),
                         meta.get("reason") or "", *(_num(points.get(n, 0)) for n in numbers)])
    return buf.getvalue()


def _num(value: Any) -> str:
    return f"{float(value):g}"


#: An invariant id at the start of a feedback line: ``slot-released-on-every-path: ...`` (grader/README.md).
INVARIANT_LINE = re.compile(r"^\s*([a-z][a-z0-9]*(?:-[a-z0-9]+)+): ", re.MULTILINE)
#: A failed check of an acceptance scenario: ``FAILED exactly-once (1 pts): ...``.
FAILED_CHECK = re.compile(r"^FAILED ([^(\n]+?) \([\d.]+ pts?\)", re.MULTILINE)


def broken_invariants(data: Mapping[str, Any]) -> tuple[set[str], set[str]]:
    """The invariant ids and the scenario checks a student's failed tests name (each counted once)."""
    invariants: set[str] = set()
    checks: set[str] = set()
    for test in data.get("tests", []):
        if test.get("status") == "passed":
            continue
        output = str(test.get("output", ""))
        invariants.update(INVARIANT_LINE.findall(output))
        checks.update(c.strip() for c in FAILED_CHECK.findall(output))
    return invariants, checks
