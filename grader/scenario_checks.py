"""The checks proper to one scenario (``Scenario.extra``): what only that scenario's faults can prove.

Every scenario is scored by the same gates and thresholds (:mod:`grader.scenario_scoring`); some
also name extra checks here, each a function ``(ScenarioRun) -> (ok, message)`` registered in
:data:`EXTRA_CHECKS` under the name its scenario and its points use. Apart from the scoring because
they grow one by one with the scenarios (an idle resume, duplicates folded, the degraded path, a
backfill, a rebuilt checkpoint, ...), while the scoring is fixed; the breaker's own checks are in
:mod:`grader.scenario_breaker` and joined in here.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable

from batchlab.documents import Inventory, normalize_id
from batchlab.ledger import Ev
from batchlab.rundir import RunDir
from batchlab.sink import read_outputs

from .analysis import some
from .scenario_breaker import BREAKER_CHECKS
from .scenario_running import ScenarioRun


def _idle_resume(run: ScenarioRun) -> tuple[bool, str]:
    last = run.views[-1] if run.views else None
    if last is None:
        return False, "idle resume: no pass in the ledger"
    redone = sorted(last.call_idents & last.committed_before)
    if last.calls or last.puts:
        return False, (f"idle resume: the resume pass of a finished batch made {last.calls} service calls and "
                       f"{last.puts} commits (redone: {some(redone)})")
    return True, "idle resume: the resume pass made no service call and no commit"


def _duplicates_folded(run: ScenarioRun) -> tuple[bool, str]:
    """Re-sent documents are recognised: counted in the report, and never executed twice within one pass.

    (A second execution in a *later* pass is a resume problem, scored by exactly-once.)
    """
    expected = Inventory.of(run.documents).duplicates_in_input
    reports = [v.report for v in run.views if v.report]
    if not reports:
        return False, "duplicates folded: no pass returned a report"
    said = reports[-1].get("duplicates_in_input")
    if said != expected:
        return False, (f"duplicates folded: the report counts {said} duplicates in the input, the input has "
                       f"{expected} (same source, id up to case and spaces, content up to Unicode form and spacing)")
    seen: Counter[tuple[int, str]] = Counter()
    first_id: dict[str, str] = {}
    for e in run.events:
        if e["ev"] == Ev.SINK_PUT:
            seen[(int(e["pass"]), e["ident"])] += 1
            first_id.setdefault(e["ident"], e["doc_id"])
    twice = sorted(f"{first_id[i]} executed {n} times in pass {p}" for (p, i), n in seen.items() if n > 1)
    if twice:
        return False, f"duplicates folded: re-sent documents ran again within one pass: {some(twice, 3)}"
    return True, f"duplicates folded: {expected} re-sent documents recognised, none executed twice in a pass"


def _degraded_path(run: ScenarioRun) -> tuple[bool, str]:
    outputs = {rec.ident: rec for rec in read_outputs(RunDir(run.run_dir).sink)}
    permanent = set(run.scenario.plan.permanent_ids)
    wrong = []
    for entry in Inventory.of(run.documents).entries:
        doc = entry.document
        if doc is not None and entry.ident is not None and normalize_id(doc.id) in permanent:
            rec = outputs.get(entry.ident)
            if rec is None or rec.mode != "degraded":
                wrong.append(f"{doc.id} ({'not committed' if rec is None else 'committed ' + rec.mode})")
    if wrong:
        return False, (f"degraded path: documents whose every call fails permanently must be committed in "
                       f"degraded mode (clean + fixed chunks + local embedding): {some(wrong)}")
    return True, f"degraded path: all {len(permanent)} permanently failing documents committed degraded"


def _unified_error(run: ScenarioRun) -> tuple[bool, str]:
    bad = run.passes[1] if len(run.passes) > 1 else None
    if bad is None:
        return False, "unified error: the bad-input pass did not run"
    try:
        payload = json.loads(bad.stdout)
        err = payload["error"]
        shape = all(k in err for k in ("code", "message", "details", "hints"))
    except (ValueError, KeyError, TypeError):
        shape = False
        err = {}
    if bad.returncode != 2 or not shape:
        return False, (f"unified error: a malformed batch must exit 2 with "
                       f'{{"error": {{code, message, details, hints}}}}; got exit {bad.returncode}, '
                       f"output {bad.stdout[:200]!r}")
    return True, f"unified error: exit 2 with code {err['code']!r}"


def _state_untouched(run: ScenarioRun) -> tuple[bool, str]:
    before, after = run.facts.get("digest_before"), run.facts.get("digest_after")
    if before != after:
        changed = sorted(k for k in set(before or {}) | set(after or {})
                         if (before or {}).get(k) != (after or {}).get(k))
        return False, f"earlier state untouched: the refused batch changed {some(changed)}"
    last = run.views[-1]
    if last.calls or last.puts:
        return False, (f"earlier state untouched: after the refused batch, resuming the good one redid work "
                       f"({last.calls} calls, {last.puts} commits)")
    return True, "earlier state untouched: sink and checkpoint unchanged; the next resume had nothing to redo"


def _backfill(run: ScenarioRun) -> tuple[bool, str]:
    """Every document degraded before the backfill pass is committed full after it, as an upgrade; nothing else ran."""
    degraded = dict(run.facts.get("degraded_before_backfill") or {})
    view = run.views[-1] if run.views else None
    if not degraded:
        return False, "backfill: the passes before the backfill left no degraded document (nothing to upgrade)"
    if view is None or view.pass_no != run.scenario.pass_count:
        return False, "backfill: the backfill pass did not run"
    outputs = {rec.ident: rec for rec in read_outputs(RunDir(run.run_dir).sink)}
    still = sorted(doc_id for ident, doc_id in degraded.items()
                   if ident not in outputs or outputs[ident].mode != "full")
    upgrades = {e["ident"] for e in run.events if e["ev"] == Ev.SINK_PUT and int(e["pass"]) == view.pass_no
                and e.get("upgrade") is True}
    others = sorted({e["doc_id"] for e in run.events if e["ev"] == Ev.CALL_START and int(e["pass"]) == view.pass_no
                     and e["ident"] not in degraded})
    if still:
        return False, (f"backfill: {len(still)} of {len(degraded)} degraded documents are still not committed full "
                       f"after a backfill pass with a healthy service: {some(still)}. " + BACKFILL_RULE)
    if others:
        return False, (f"backfill: the backfill pass called the service for documents that were not degraded: "
                       f"{some(others)} (only degraded keys are redone; every other key is skipped). " + BACKFILL_RULE)
    return True, (f"backfill: {len(degraded)} degraded documents upgraded to full ({len(upgrades)} upgrades in the "
                  f"backfill pass), no other document redone")


BACKFILL_RULE = ("backfill-redoes-degraded: 后续标记待补（backfill）：BatchConfig.backfill 为真时，恢复运行把检查点里是 degraded"
                 "（或 sink 里已提交为 degraded、检查点还没记下）的键再走一遍完整路径（full path），sink.put 用完整输出替换降级输出；"
                 "其余已完成的键照样跳过（skip）。")


def _checkpoint_rebuilt(run: ScenarioRun) -> tuple[bool, str]:
    """After the checkpoint was deleted, a resume pass calls the service for no document the sink already holds."""
    forgotten: dict[int, list[str]] = run.facts.get("forgotten", {})
    if not forgotten:
        return False, "checkpoint rebuilt: the grader never got to delete the checkpoint (no resume pass ran)"
    names: dict[str, str] = {}
    for e in Inventory.of(run.documents).entries:
        if e.ident is not None and e.document is not None:
            names.setdefault(e.ident, e.document.id)
    redone = []
    for view in run.views:
        if view.pass_no in forgotten:
            again = sorted(names.get(i, i) for i in view.call_idents & view.committed_before)
            redone += [f"pass {view.pass_no}: {len(again)} ({some(again, 4)})"] if again else []
    if redone:
        return False, ("checkpoint rebuilt: with the state folder deleted, resume passes called the service again "
                       f"for documents the sink had committed before them: {'; '.join(redone)}\n"
                       "checkpoint-rebuilt-from-sink: 存储（sink）是事实来源（source of truth），检查点只是它的索引（index）："
                       "检查点丢了或坏了，要从 sink 重建。恢复时先用一次查询 sink.keys() 拿到已提交的键，已提交的不再调用服务，"
                       "不能只信检查点（也不能只对检查点里停在 processing 的文档才去问 sink）。")
    held = {v.pass_no: len(v.committed_before) for v in run.views}
    resumed = ", ".join(f"pass {p} ({len(files)} files; the sink held {held.get(p, 0)} documents)"
                        for p, files in sorted(forgotten.items()))
    return True, (f"checkpoint rebuilt: the state folder was deleted before {resumed}; no document the sink "
                  "held was sent to the service again")


EXTRA_CHECKS: dict[str, Callable[[ScenarioRun], tuple[bool, str]]] = {
    "idle resume": _idle_resume,
    "duplicates folded": _duplicates_folded,
    "degraded path": _degraded_path,
    "unified error": _unified_error,
    "earlier state untouched": _state_untouched,
    "backfill": _backfill,
    "checkpoint rebuilt": _checkpoint_rebuilt,
    **BREAKER_CHECKS,
}
