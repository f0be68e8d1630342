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
from grader.minirun import MiniRun
from grader.results import GraderError
from grader.resume_tasks import CONFIG, KILL_AT, POISON_DOCS, documents_started_not_committed

pytestmark = pytest.mark.step("resume")


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
    peak, at = documents_started_not_committed(first)
    limit = CONFIG["concurrency"]
    if peak > limit and at is not None:
        grade.fail(f"concurrency: process_documents_batch had {peak} documents started and not yet committed at once "
                   f"> config.concurrency {limit} (first at call #{at['call']}, {at['doc_id']}): run the documents "
                   "left through run_bounded(..., limit=config.concurrency) instead of starting them all"
                   + CONCURRENCY_RULE)
    if not run.calls(1):
        grade.fail("process_documents_batch made no service call on a fresh 12-document batch")
    grade.note(f"peak {peak} documents started and not yet committed (config.concurrency {limit})")


CONCURRENCY_RULE = ("\nconcurrency-per-document: 并发（concurrency）按文档计（per document），不按调用计（per call）：一个文档"
                    "从进入 processing 到提交（commit）一直占着一个槽（slot）。只给每次 service 调用加信号量（semaphore）"
                    "会让整批文档同时开始（全部 processing、全部在内存里）。")


DEGRADED_RULE = ("\ndegraded-is-not-done: 检查点（checkpoint）的状态机（state machine）里 degraded 是一种完成，"
                 "但不是 done：走降级路径（degraded path）提交的文档必须记成 degraded，之后的补跑（backfill）才能找到它们；"
                 "完整提交的记成 done。")
PROGRESS_RULE = ("\nprogress-on-every-state-change: 每次状态变化都要通过 progress(doc_id, state, error=..., attempts=...) "
                 "报告（report progress）：每个提交（done）、降级（degraded）和失败（failed）的文档至少报告一次它的最终状态，"
                 "进度条（progress bar）和老师的仪表盘（dashboard）只看得见这些。")


def _states_run(grade: Any) -> tuple[MiniRun, Any]:
    run, dump = grade.facts()
    _checked(grade, run, killed_first=True, what="14 documents (2 degraded), SIGKILL after commit #6, resume")
    if any(d["id"] not in {r.doc_id for r in run.outputs.values()} for d in run.documents):
        grade.fail("the two-pass run of 14 documents did not commit them all; see the resume tests")
    return run, dump


@pytest.mark.points(2)
@pytest.mark.task("resume:states")
def test_checkpoint_states_match_the_sink(grade: Any) -> None:
    """After the batch, the checkpoint says done for full commits and degraded for degraded ones"""
    run, dump = _states_run(grade)
    if dump.is_grader_error:
        raise GraderError(dump.failure("reading the checkpoint after the run"))
    if not dump.ok:
        grade.fail(dump.failure("reopening the checkpoint after the run (CheckpointStore(state_dir, batch_id))"))
    by_doc = {str(e.get("doc_id") or "").strip().casefold(): e for e in dump.data["entries"].values() if e}
    wrong = []
    for rec in run.outputs.values():
        want = "degraded" if rec.mode == "degraded" else "done"
        got = (by_doc.get(rec.doc_id.strip().casefold()) or {}).get("state")
        if got != want:
            wrong.append(f"{rec.doc_id} committed {rec.mode}, checkpoint says {got or 'nothing'}")
    if wrong:
        grade.fail(f"checkpoint states: {len(wrong)} of {len(run.outputs)} committed documents have the wrong state: "
                   f"{some(sorted(wrong), 4)}" + DEGRADED_RULE)
    grade.note(f"{len(run.outputs)} committed documents: done for full, degraded for degraded (st-2, st-9)")


@pytest.mark.points(2)
@pytest.mark.task("resume:states")
def test_progress_reports_every_outcome(grade: Any) -> None:
    """Every committed and degraded document is reported through progress with its final state"""
    run, _ = _states_run(grade)
    reported: dict[str, set[str]] = {}
    for e in run.events:
        if e["ev"] == "state":
            reported.setdefault(str(e.get("doc_id", "")).strip().casefold(), set()).add(str(e.get("state")))
    missing = []
    for rec in run.outputs.values():
        want = "degraded" if rec.mode == "degraded" else "done"
        if want not in reported.get(rec.doc_id.strip().casefold(), set()):
            missing.append(f"{rec.doc_id} ({want})")
    if missing:
        grade.fail(f"progress: {len(missing)} of {len(run.outputs)} documents were never reported in their final "
                   f"state: {some(sorted(missing), 4)} ({sum(len(v) for v in reported.values())} progress calls in "
                   "all)" + PROGRESS_RULE)
    grade.note(f"all {len(run.outputs)} documents reported in their final state through progress")


@pytest.mark.points(2)
@pytest.mark.task("resume:poison")
def test_poison_document_does_not_stop_the_batch(grade: Any) -> None:
    """One document whose processing raises an unexpected error ends failed; the batch goes on"""
    run: MiniRun = grade.facts()
    verdict = run.verdicts[0]
    if verdict.is_grader_error:
        raise GraderError(verdict.failure("a batch with a poison document"))
    committed = {rec.doc_id for rec in run.outputs.values()}
    missing = sorted(d["id"] for d in run.documents if d["id"] not in committed and d["id"] != "px-3")
    rule = ("\npoison-document-isolated: 毒文档（poison document）：一个有效文档触发的意外异常（unexpected exception，"
            "这里 service.embed 抛出 MalformedResponseError，一个 ValueError，不是 ServiceError）不能中止整批（batch）；"
            "用 except Exception 兜住单个文档，标记 failed 并记下 last_error，其余文档照常处理。")
    if not verdict.ok:
        grade.fail(f"poison document: px-3's service answer cannot be decoded (MalformedResponseError, a ValueError) "
                   f"and the batch stopped: {verdict.failure('the batch').splitlines()[0][:300]}; "
                   f"never committed: {some(missing)}" + rule)
    if missing:
        grade.fail(f"poison document: after px-3 raised, {len(missing)} other documents were never committed: "
                   f"{some(missing)}" + rule)
    grade.note(f"px-3 raised an unexpected error; the other {POISON_DOCS - 1} documents were committed")


SHARD_RULE = ("\nshard-partition: 分片（shard）\"i/n\" 按幂等键的稳定哈希（stable hash，如 sha256，不能用每个进程加了盐的 hash()）"
              "取模 n 等于 i 来认领文档：0/n ... n-1/n 各片合起来恰好覆盖整批，每篇文档只属于一片（in_shard）；"
              "classify_entry 跳过别的分片的文档；每片的检查点各自独立（CheckpointStore(..., shard=config.shard)）。")


@pytest.mark.points(2)
@pytest.mark.task("resume:shards")
def test_shards_partition_the_batch(grade: Any) -> None:
    """Shards 0/2 and 1/2 each run a part of the batch and together every document exactly once"""
    run: MiniRun = grade.facts()
    _checked(grade, run, killed_first=False, what="shard 0/2, shard 1/2, then the whole batch")
    by_pass = {p: sorted({e["doc_id"] for e in run.events if e["ev"] == "sink_put" and e["pass"] == p}) for p in (1, 2, 3)}
    called = {p: {e["doc_id"] for e in run.calls(p)} for p in (1, 2)}
    writes = Counter(p["doc_id"] for p in run.puts if p["pass"] in (1, 2))
    twice = sorted(d for d, n in writes.items() if n > 1)
    missing = sorted(d["id"] for d in run.documents if d["id"] not in writes)
    if not by_pass[1] or not by_pass[2]:
        grade.fail(f"shards: shard 0/2 committed {len(by_pass[1])} documents and shard 1/2 {len(by_pass[2])} of 16: "
                   "each shard must run its part of the batch, not all of it nor none" + SHARD_RULE)
    if twice or called[1] & called[2]:
        grade.fail(f"shards: documents run by both shards: {some(sorted(set(twice) | (called[1] & called[2])), 4)}"
                   + SHARD_RULE)
    if missing:
        grade.fail(f"shards: after shards 0/2 and 1/2, {len(missing)} documents were never committed: {some(missing)}"
                   + SHARD_RULE)
    if run.calls(3) or by_pass[3]:
        grade.fail(f"shards: the batch run without a shard after both shards made {len(run.calls(3))} service calls "
                   f"and {len(by_pass[3])} commits ({some(by_pass[3], 3)}): every key was already committed by one "
                   "of the shards; a run whose checkpoint (its shard's) knows nothing must ask the sink (sink.keys())")
    grade.note(f"shard 0/2 committed {len(by_pass[1])}, shard 1/2 {len(by_pass[2])} of 16, none twice; "
               "the unsharded run after them found nothing to do")
