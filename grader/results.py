"""Scores: one record per graded test, the Gradescope ``results.json``, and the end-of-run score table.

``results.json`` (Gradescope's autograder format)::

    {"score": 87.5, "execution_time": 41.2, "output": "...", "visibility": "visible",
     "tests": [{"name", "number", "score", "max_score", "status": "passed"|"failed",
                "output", "visibility": "visible"|"after_published", "tags": [step]}],
     "extra_data": {"hidden_scenarios": 4, "step": null, "grader_errors": [...], ...}}

It is written at the end of every session, even when collection failed or the
run was interrupted (docs/design.md, principle 13), atomically (a temporary file renamed).
A *grader error* (a bug of the grader, never the student's doing) is listed in
``extra_data.grader_errors`` and marked in the test's output, apart from
student errors; the test scores 0 and a TA should look at it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


class GraderError(Exception):
    """Raised by grader code when the grader itself cannot go on (not the student's fault)."""


@dataclass
class TestRecord:
    nodeid: str
    name: str
    number: str
    step: str | None
    max_score: float
    score: float
    status: str  # "passed" | "failed"
    output: str
    visibility: str = "visible"
    grader_error: str | None = None
    scenario: dict[str, Any] | None = None
    duration_s: float = 0.0

    def gradescope(self) -> dict[str, Any]:
        data = {"name": self.name, "number": self.number, "score": round(self.score, 4),
                "max_score": round(self.max_score, 4), "status": self.status, "output": self.output,
                "visibility": self.visibility}
        if self.step:
            data["tags"] = [self.step]
        return data


@dataclass
class SessionSummary:
    records: list[TestRecord]
    hidden_count: int
    hidden_run: bool
    step: str | None
    grader_errors: list[str] = field(default_factory=list)
    impl: str = ""
    duration_s: float = 0.0
    thresholds: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)  #: more ``extra_data`` (the sandbox in force, ...)

    @property
    def score(self) -> float:
        return sum(r.score for r in self.records)

    @property
    def max_score(self) -> float:
        return sum(r.max_score for r in self.records)

    @property
    def passed(self) -> int:
        return sum(1 for r in self.records if r.status == "passed")

    def final_line(self) -> str:
        """Honest about what was not run (docs/design.md, principle 12): never just "all tests passed"."""
        n, k = len(self.records), self.passed
        score = f"score {self.score:g}/{self.max_score:g}"
        if self.grader_errors:
            prefix = f"{len(self.grader_errors)} GRADER ERROR(S), see extra_data.grader_errors; "
        else:
            prefix = ""
        if self.hidden_run:
            return f"{prefix}{k} of {n} checks passed ({score}), {self.hidden_count} hidden scenarios included"
        scope = f" of step {self.step}" if self.step else ""
        head = f"{n} public checks{scope} passed" if k == n and n else f"{k} of {n} public checks{scope} passed"
        return f"{prefix}{head} ({score}); {self.hidden_count} hidden scenarios run at grading"

    def payload(self) -> dict[str, Any]:
        return {
            "score": round(self.score, 4),
            "max_score": round(self.max_score, 4),
            "execution_time": round(self.duration_s, 2),
            "output": self.final_line(),
            "visibility": "visible",
            # The printed output of a run with hidden scenarios describes them: students see it once published.
            "stdout_visibility": "after_published" if self.hidden_run else "visible",
            "tests": [r.gradescope() for r in self.records],
            "extra_data": {
                "hidden_scenarios": self.hidden_count,
                "hidden_run": self.hidden_run,
                "step": self.step,
                "grader_errors": list(self.grader_errors),
                "impl": self.impl,
                "thresholds": dict(self.thresholds),
                "nodeids": {r.number: r.nodeid for r in self.records},
                **self.extra,
            },
        }


def write_results(path: Path, summary: SessionSummary) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(summary.payload(), ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)
    return path


def score_table(summary: SessionSummary) -> str:
    """Points per test, each scenario's metrics against the thresholds, and the total."""
    rows = [(r.number, r.name[:70], f"{r.score:g}/{r.max_score:g}",
             "GRADER ERROR" if r.grader_error else r.status) for r in summary.records]
    if not rows:
        rows = [("-", "no graded test ran", "0/0", "")]
    w = [max(len(x[i]) for x in rows) for i in range(4)]
    lines = [f"{'#':<{w[0]}}  {'test':<{w[1]}}  {'points':>{w[2]}}  result", "-" * (sum(w) + 14)]
    lines += [f"{a:<{w[0]}}  {b:<{w[1]}}  {c:>{w[2]}}  {d}" for a, b, c, d in rows]
    lines.append("-" * (sum(w) + 14))
    lines.append(f"{'':<{w[0]}}  {'total':<{w[1]}}  {summary.score:g}/{summary.max_score:g}")
    metric_rows = _metric_rows(summary.records)
    if metric_rows:
        lines += ["", "scenario metrics against the thresholds "
                  + ", ".join(f"{k} {v}" for k, v in summary.thresholds.items()), *metric_rows]
    return "\n".join(lines)


def _metric_rows(records: Sequence[TestRecord]) -> list[str]:
    out = []
    for r in records:
        sc = r.scenario
        if not sc:
            continue
        m = sc["metrics"]
        resume = m.get("resume_time_s")
        marks = {c["name"]: ("ok" if c["ok"] else "FAIL") for c in sc["checks"]}
        out.append(
            f"  {sc['scenario']:<22} completion {m['completion_rate'] * 100:6.2f} % {marks.get('completion', '')}"
            f"  duplicates {m['duplicate_rate'] * 100:5.2f} % {marks.get('duplicate rate', '')}"
            f"  fail {m['fail_rate'] * 100:5.2f} % {marks.get('fail rate', '')}"
            f"  resume {'n/a' if resume is None else f'{resume:.2f} s'} {marks.get('resume time', '')}"
            f"  {sc['duration_s']:.1f} s {m['documents']} docs {m['retries']} retries"
            + (f"  [not scored: {sc['gate'].splitlines()[0][:60]}]" if sc.get("gate") else ""))
    return out


def record_to_dict(record: TestRecord) -> dict[str, Any]:
    return asdict(record)
