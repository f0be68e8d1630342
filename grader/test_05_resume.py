"""Step 05 (resume): a second run skips committed keys, redoes what a kill interrupted, and trusts the sink.

Each test is a small two-pass run in probe children with a real SIGKILL:
before the K-th sink write (the harness's runner cannot place that one), or
right after the K-th commit (before the processor can update its checkpoint).
The first pass of the idle-resume run also shows whether the batch keeps to
``config.concurrency`` (step 04 checks ``run_bounded`` itself; this checks that
the batch uses it with that limit).
"""

from __future__ import annotations

import signal
from collections import Counter
from typing import Any

import pytest

from grader.analysis import some
from grader.test_04_concurrency import documents_in_flight
from grader.minirun import MiniRun, mini_run, short_docs
from grader.results import GraderError
from grader.tasks import Context, task

pytestmark = pytest.mark.step("resume")

CONFIG = {"concurrency": 2, "max_attempts": 4, "base_delay": 0.001, "max_delay": 0.01, "jitter": 0.001}
LATENCY = {"median_ms": 2.0, "sigma": 0.3}
KILL_AT = 6


@task("resume:idle")
def idle_facts(ctx: Context) -> MiniRun:
    common = {"config": CONFIG, "latency": LATENCY, "plan": {"seed": 8}}
    return mini_run(ctx, "resume-idle", short_docs("idle", 12, sentences=2), [common, common])


@task("resume:before_sink")
def before_sink_facts(ctx: Context) -> MiniRun:
    common = {"config": CONFIG, "latency": LATENCY, "plan": {"seed": 9}}
    return mini_run(ctx, "resume-before-sink", short_docs("pre", 16, sentences=2),
                    [{**common, "kill_before_put_at": KILL_AT}, common])


@task("resume:after_commit")
def after_commit_facts(ctx: Context) -> MiniRun:
    common = {"config": CONFIG, "latency": LATENCY, "plan": {"seed": 10}}
    return mini_run(ctx, "resume-after-commit", short_docs("post", 16, sentences=2),
                    [{**common, "crash": {"kind": "after_commit", "at": KILL_AT}}, common])


def _checked(grade: Any, run: MiniRun, *, killed_first: bool, what: str) -> None:
    for n, verdict in enumerate(run.verdicts, start=1):
        if verdict.is_grader_error:
            raise GraderError(verdict.failure(f"{what}, pass {n}"))
        if n == 1 and killed_first:
            if verdict.status == "died" and verdict.returncode == -signal.SIGKILL:
                continue
            if verdict.ok:
                grade.fail(f"{what}: the planned SIGKILL at sink write #{KILL_AT} never fired "
                           f"(pass 1 made {run.views[0].puts if run.views else 0} commits)")
        if not verdict.ok:
            grade.fail(verdict.failure(f"{what}, pass {n}"))


@pytest.mark.points(2)
@pytest.mark.task("resume:idle")
def test_resume_skips_committed_keys(grade: Any) -> None:
    """Run again after a complete run, the batch makes no service call and no commit"""
    run: MiniRun = grade.facts()
    _checked(grade, run, killed_first=False, what="resume of a finished batch")
    second = run.calls(2)
    puts = [e for e in run.events if e["ev"] == "sink_put" and e["pass"] == 2]
    if second or puts:
        grade.fail(f"resume redid committed work: the second run of a finished 12-document batch made "
                   f"{len(second)} service calls ({some(sorted({e['doc_id'] for e in second}), 3)}) and "
                   f"{len(puts)} commits; skip keys that are done in the checkpoint or committed in the sink")
    grade.note("second run: 0 calls, 0 commits")


@pytest.mark.points(3)
@pytest.mark.task("resume:before_sink")
def test_resume_redoes_work_killed_before_its_sink_write(grade: Any) -> None:
    """A document killed before its sink write is processed again on resume (done only after the sink write)"""
    run: MiniRun = grade.facts()
    what = f"SIGKILL before sink write #{KILL_AT}, then resume"
    _checked(grade, run, killed_first=True, what=what)
    crash = next((e for e in run.events if e["ev"] == "crash"), None)
    victim = crash["doc_id"] if crash else "?"
    committed = {rec.doc_id for rec in run.outputs.values()}
    missing = sorted(d["id"] for d in run.documents if d["id"] not in committed)
    if missing:
        hint = (f" {victim} was killed before its sink write and the resume skipped it: was it marked done "
                "before sink.put returned? The checkpoint may say done only after the sink write is durable."
                if victim in missing else "")
        grade.fail(f"resume ({what}): {len(missing)} documents never committed: {some(missing)}.{hint}")
    grade.note(f"{victim} (killed before its write) was redone on resume; all 16 committed")


@pytest.mark.points(3)
@pytest.mark.task("resume:after_commit")
def test_resume_trusts_the_sink_after_a_kill_after_commit(grade: Any) -> None:
    """A document committed just before a kill is not processed again (the sink, not the checkpoint, says done)"""
    run: MiniRun = grade.facts()
    what = f"SIGKILL right after sink commit #{KILL_AT}, then resume"
    _checked(grade, run, killed_first=True, what=what)
    crash = next((e for e in run.events if e["ev"] == "crash"), None)
    victim = crash["doc_id"] if crash else "?"
    writes = Counter(p["doc_id"] for p in run.puts)
    twice = sorted(d for d, n in writes.items() if n > 1)
    recalled = sorted({e["doc_id"] for e in run.calls(2)} & {p["doc_id"] for p in run.puts if p["pass"] == 1})
    if twice or recalled:
        detail = "; ".join(f"{d} executed {writes[d]} times (pass "
                           + ", pass ".join(str(p["pass"]) for p in run.puts if p["doc_id"] == d) + ")"
                           for d in twice[:3])
        grade.fail(f"exactly-once ({what}): {detail or ''}"
                   + (f"; committed in pass 1 but called again in pass 2: {some(recalled, 3)}" if recalled else "")
                   + f". {victim} was committed, then the process died before the checkpoint said so: on resume "
                     "ask the sink (sink.keys()) and heal the checkpoint instead of redoing it.")
    committed = {rec.doc_id for rec in run.outputs.values()}
    missing = sorted(d["id"] for d in run.documents if d["id"] not in committed)
    if missing:
        grade.fail(f"resume ({what}): {len(missing)} documents never committed: {some(missing)}")
    grade.note(f"{victim} (committed just before the kill) was healed from the sink, not redone")


@pytest.mark.points(2)
@pytest.mark.task("resume:idle")
def test_batch_keeps_to_config_concurrency(grade: Any) -> None:
    """process_documents_batch never has more than config.concurrency documents in flight"""
    run: MiniRun = grade.facts()
    _checked(grade, run, killed_first=False, what="a 12-document batch with config.concurrency 2")
    first = [e for e in run.events if e.get("pass") == 1]
    peak, at = documents_in_flight(first)
    limit = CONFIG["concurrency"]
    if peak > limit and at is not None:
        grade.fail(f"concurrency: process_documents_batch had {peak} documents with service calls in flight at once "
                   f"> config.concurrency {limit} (first at call #{at['call']}, {at['doc_id']}): run the documents "
                   "left through run_bounded(..., limit=config.concurrency) instead of starting them all")
    if not run.calls(1):
        grade.fail("process_documents_batch made no service call on a fresh 12-document batch")
    grade.note(f"peak {peak} documents in flight (config.concurrency {limit})")
