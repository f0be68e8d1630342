"""Scoring an acceptance scenario from the ledger and the sink alone: the gates, the lesson's thresholds,
exactly-once, the report against the ledger, and the checks proper to the scenario (:func:`evaluate`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from batchlab.documents import Inventory, normalize_id
from batchlab.faults import CRASH_NONE, CrashPlan
from batchlab.ledger import Ev
from batchlab.rundir import RunDir
from batchlab.runner import PassResult
from batchlab.sink import read_outputs
from batchlab.thresholds import Threshold
from batchlab.worker import WorkerExit

from .analysis import agreement_failures, completion_detail, duplicate_detail, rules_for, some
from .forgery import forgery
from .sandbox import TODO_RE, death_reason
from .scenario_breaker import BREAKER_CHECKS, breaker_gate, stuck_hint
from .scenario_model import BASE_POINTS, EXTRA_POINTS, Scenario
from .scenario_running import ScenarioRun


@dataclass
class Check:
    name: str
    points: float
    ok: bool
    message: str


@dataclass
class ScenarioResult:
    scenario: Scenario
    header: str
    gate: str | None
    checks: list[Check]
    run: ScenarioRun

    @property
    def earned(self) -> float:
        return 0.0 if self.gate else sum(c.points for c in self.checks if c.ok)

    @property
    def max_points(self) -> float:
        return sum(c.points for c in self.checks)

    @property
    def passed(self) -> bool:
        return self.gate is None and all(c.ok for c in self.checks)

    def summary_line(self) -> str:
        m = self.run.metrics
        return (f"{self.scenario.name}: {'passed' if self.passed else 'FAILED'}  {self.run.duration_s:.1f} s  "
                f"{m.total} docs  {m.retries} retries  {len(self.run.passes)} passes")

    def feedback(self) -> str:
        lines = [self.header]
        if self.gate:
            lines.append(f"scenario not scored (0 of {self.max_points:g} pts): {self.gate}")
            lines.append("figures for the record:")
            lines += [f"  - {c.message}" for c in self.checks]
            return "\n".join(lines)
        for c in self.checks:
            if not c.ok:
                lines.append(f"FAILED {c.name} ({c.points:g} pts): {c.message}")
        for c in self.checks:
            if c.ok:
                lines.append(f"ok     {c.name}: {c.message}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"scenario": self.scenario.name, "title": self.scenario.title, "seed": self.scenario.seed,
                "crash_plans": [{"kind": p.kind, "at": p.at, "window": list(p.window)} for p in self.run.crash_plans],
                "hidden": self.scenario.hidden, "gate": self.gate, "earned": self.earned,
                "max_points": self.max_points, "duration_s": self.run.duration_s,
                "checks": [c.__dict__ for c in self.checks],
                "passes": [{"pass": p.pass_no, "outcome": p.outcome, "duration_s": round(p.duration_s, 3)}
                           for p in self.run.passes],
                "metrics": self.run.metrics.to_dict()}


def _pct(value: float) -> str:
    return f"{value * 100:.2f} %"


def threshold_message(label: str, t: Threshold, value: float | None, detail: str = "") -> tuple[bool, str]:
    ok = t.passes(value)
    if value is None:
        return ok, f"{label}: not measured"
    shown = _pct(value) if t.metric.endswith("_rate") else f"{value:.3f} s"
    bound = t.text.split(" ", 1)[1]
    if ok:
        op = t.text.split(" ", 1)[0]
    else:
        op = "<" if t.min is not None else ">"
    return ok, f"{label}: {shown} {op} {bound}" + (f" ({detail})" if detail else "")


def _pass_problem(sc: Scenario, run: ScenarioRun, result: PassResult) -> str:
    view = next((v for v in run.views if v.pass_no == result.pass_no), None)
    text = f"pass {result.pass_no} {result.outcome}"
    if result.timed_out:
        text = (f"pass {result.pass_no} did not finish within {run.scenario.timeout_s:g} s and was killed "
                "(a hang or an endless loop?)" + stuck_hint(run))
    elif result.returncode == WorkerExit.IMPORT:
        text = f"pass {result.pass_no}: the module failed to import"
    elif result.returncode is not None and result.returncode < 0 and not result.killed_by_parent:
        text = f"pass {result.pass_no}: {death_reason(result.returncode)}"
    error = view.student_error if view else None
    todo = TODO_RE.search(error or "") or TODO_RE.search(result.stderr)
    if todo:
        return f"{text}: not implemented yet ({todo.group(0)})"
    if error:
        text += f": {error}"
        if "MalformedResponseError" in error:
            text += "\n" + POISON_RULE.format(ids=", ".join(run.scenario.plan.poison_ids))
    tail = "\n".join(result.stderr.strip().splitlines()[-6:])
    return text + (f"\n{tail}" if tail else "")


POISON_RULE = ("poison-document-isolated: completion lost: one document's unexpected exception stopped the whole "
               "batch (poison documents of this scenario: {ids}). 毒文档（poison document）：一个有效但古怪的文档触发的"
               "意外异常（unexpected exception，这里是服务答复无法解码的 ValueError，不是 ServiceError）不能中止整批；"
               "在每个文档的处理里用 except Exception 兜底，把它标记为 failed（记下 last_error）后继续处理其余文档。")


def gate_failure(run: ScenarioRun) -> str | None:
    """Why the scenario cannot be scored at all, or None."""
    sc = run.scenario
    forged = forgery(run)
    if forged:
        return forged
    for _pass_no, diagnosis in sorted((run.facts.get("stalled") or {}).items()):
        return str(diagnosis) + stuck_hint(run)
    for result in run.passes:
        planned = run.crash_plans[result.pass_no - 1] if result.pass_no <= len(run.crash_plans) else CrashPlan()
        expect_bad_input = sc.flow == "bad_input" and result.pass_no == 2
        if expect_bad_input:
            continue
        view = next((v for v in run.views if v.pass_no == result.pass_no), None)
        if planned.kind != CRASH_NONE and sc.flow in ("passes", "backfill"):
            if result.sigkilled and view is not None and view.crash is not None:
                continue
            if result.returncode == 0:
                calls = view.calls if view else 0
                puts = view.puts if view else 0
                return (f"the planned crash never fired: pass {result.pass_no} ({sc.describe_crashes(run.crash_plans)}"
                        f") ended normally after {calls} service calls and {puts} commits")
            return _pass_problem(sc, run, result)
        if result.returncode != 0:
            return _pass_problem(sc, run, result)
    expected_passes = sc.pass_count
    if len(run.passes) < expected_passes:
        return f"only {len(run.passes)} of {expected_passes} passes ran"
    if (never := breaker_gate(run)) is not None:
        return never
    plan = sc.plan
    if plan.transient_rate or plan.fail_first_rate or plan.permanent_rate or plan.permanent_ids:
        if not any(e["ev"] == "call_fail" for e in run.events):
            return "the planned service faults never fired (no failed call in the ledger)"
    return None


def evaluate(run: ScenarioRun, thresholds: dict[str, Threshold], *, replay: str) -> ScenarioResult:
    sc, m = run.scenario, run.metrics
    header = (f"scenario {sc.name}: {sc.title}\n"
              f"seed {sc.seed}; {sc.describe_crashes(run.crash_plans)}; {m.total} documents "
              f"({m.unique} unique, {m.rejected} invalid); concurrency {sc.config.concurrency}, "
              f"max_attempts {sc.config.max_attempts}\n"
              f"replay: {replay}\n"
              f"run directory: {run.run_dir}  (inspect: batchlab metrics {run.run_dir})")
    checks: list[Check] = []

    def add(name: str, ok: bool, message: str) -> None:
        points = BASE_POINTS.get(name, EXTRA_POINTS.get(name, 0.0))
        checks.append(Check(name, points, ok, message))

    ok, msg = threshold_message("completion", thresholds["completion_rate"], m.completion_rate, completion_detail(m))
    add("completion", ok, msg)
    ok, msg = threshold_message("duplicate rate", thresholds["duplicate_rate"], m.duplicate_rate, duplicate_detail(m))
    add("duplicate rate", ok, msg)
    uncommitted = m.missing
    detail = (f"not committed: {some(uncommitted)}; " if uncommitted else "") + f"{m.rejected} invalid"
    ok, msg = threshold_message("fail rate", thresholds["fail_rate"], m.fail_rate, detail)
    add("fail rate", ok, msg)
    resume = m.resume_time_s
    if resume is None and len(m.passes) > 1:
        add("resume time", False, "resume time: a resumed pass never called the service for unfinished work")
    else:
        ok, msg = threshold_message("resume time", thresholds["resume_time_s"], resume)
        add("resume time", ok, msg)
    if m.duplicates:
        add("exactly-once", False, f"exactly-once: {duplicate_detail(m)}")
    else:
        add("exactly-once", True, f"exactly-once: {m.unique} documents, none committed twice")
    mismatches = agreement_failures(run.views)
    add("report agrees with ledger", not mismatches,
        "report vs ledger: " + "; ".join(mismatches[:6]) + "".join(f"\n  {r}" for r in rules_for(mismatches))
        if mismatches else "report vs ledger: every figure agrees")
    for name in sc.extra:
        ok, msg = EXTRA_CHECKS[name](run)
        add(name, ok, msg)
    return ScenarioResult(scenario=sc, header=header, gate=gate_failure(run), checks=checks, run=run)


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
