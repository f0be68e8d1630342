"""Step 06 (metrics): the processor's own ``BatchReport`` agrees with the ledger (observability must not lie).

One two-pass run (a kill right after a commit, transient faults, a permanently
failing document, invalid entries, a re-sent duplicate); the resume pass's
report is compared with what the ledger and the sink recorded, with the
tolerances of :mod:`grader.analysis` (counts exact, rates within 0.1 point,
retries within 10 % or 2).
"""

from __future__ import annotations

from typing import Any

import pytest

from grader.analysis import PassView, report_mismatches, rules_for
from grader.minirun import MiniRun, mini_run, short_docs
from grader.results import GraderError
from grader.tasks import Context, task

pytestmark = pytest.mark.step("metrics")


def metrics_documents() -> list[dict[str, Any]]:
    docs: list[Any] = short_docs("m", 30, sentences=2)
    docs.insert(5, {"id": "M-3", "source": "wiki", "content": docs[3]["content"]})  # re-sent m-3
    docs.insert(9, {"source": "wiki", "content": "no id"})
    docs.insert(14, {"id": "m-empty", "source": "wiki", "content": "  "})
    return docs


@task("metrics:run")
def metrics_facts(ctx: Context) -> MiniRun:
    common = {"config": {"concurrency": 4, "max_attempts": 4, "base_delay": 0.001, "max_delay": 0.01,
                         "jitter": 0.001},
              "latency": {"median_ms": 2.0, "sigma": 0.3},
              "plan": {"seed": 12, "transient_rate": 0.05, "permanent_ids": ["m-7"]}}
    return mini_run(ctx, "metrics", metrics_documents(),
                    [{**common, "crash": {"kind": "after_commit", "at": 12}}, common])


def _final_view(grade: Any) -> PassView:
    run: MiniRun = grade.facts()
    for n, verdict in enumerate(run.verdicts, start=1):
        if verdict.is_grader_error:
            raise GraderError(verdict.failure(f"metrics run, pass {n}"))
        if n == 2 and not verdict.ok:
            grade.fail(verdict.failure("the resume pass of the metrics run"))
    view = run.views[-1] if run.views else None
    if view is None or view.report is None:
        grade.fail("the resume pass returned no report")
    assert view is not None and view.report is not None  # grade.fail raised otherwise
    return view


def _judge(grade: Any, group: str, fields: str) -> None:
    view = _final_view(grade)
    mismatches = report_mismatches(view, [group])
    if mismatches:
        broken = rules_for(mismatches)
        grade.fail(f"report vs ledger ({fields}; resume pass of a run killed after commit #12, "
                   f"{view.expected['total']:g} entries, {view.expected['rejected']:g} invalid, 1 re-sent, "
                   f"1 permanent): " + "; ".join(mismatches) + "".join(f"\n{rule}" for rule in broken))
    grade.note(f"{fields} agree with the ledger: "
               + ", ".join(f"{k}={(view.report or {}).get(k)}" for k in ("done", "degraded", "failed", "rejected")))


@pytest.mark.points(2)
@pytest.mark.task("metrics:run")
def test_report_state_counts_agree_with_ledger(grade: Any) -> None:
    """total, unique, rejected, done, degraded and failed in the report match the ledger and the sink"""
    _judge(grade, "counts", "state counts")


@pytest.mark.points(2)
@pytest.mark.task("metrics:run")
def test_report_rates_agree_with_ledger(grade: Any) -> None:
    """completion, fail and duplicate rates in the report match the ledger's"""
    _judge(grade, "rates", "rates")


@pytest.mark.points(2)
@pytest.mark.task("metrics:run")
def test_report_run_figures_agree_with_ledger(grade: Any) -> None:
    """executed documents, duplicate executions and retries of the pass match the ledger"""
    _judge(grade, "run", "per-pass figures")


@pytest.mark.points(2)
@pytest.mark.task("metrics:run")
def test_report_resume_figures_agree_with_ledger(grade: Any) -> None:
    """skipped, recovered, duplicates in the input and the latency count match the ledger"""
    _judge(grade, "resume", "skipped/recovered/duplicates_in_input/latencies")


@pytest.mark.points(2)
@pytest.mark.task("metrics:run")
def test_report_hit_rate_agrees_with_ledger(grade: Any) -> None:
    """the checkpoint hit rate of the resume pass (keys found finished in the checkpoint or the sink) matches the ledger"""
    _judge(grade, "hit rate", "checkpoint hit rate")
