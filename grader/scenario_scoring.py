"""Scoring an acceptance scenario from the ledger and the sink alone: the gates, the lesson's thresholds,
exactly-once, the report against the ledger, and the checks proper to the scenario (:func:`evaluate`;
those checks themselves are in :mod:`grader.scenario_checks`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from batchlab.faults import CRASH_NONE, CrashPlan
from batchlab.runner import PassResult
from batchlab.thresholds import Threshold
from batchlab.worker import WorkerExit

from .analysis import agreement_failures, completion_detail, duplicate_detail, rules_for, some
from .forgery import forgery
from .sandbox import TODO_RE, death_reason
from .scenario_breaker import breaker_gate, stuck_hint
from .scenario_checks import EXTRA_CHECKS
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
