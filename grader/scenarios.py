"""Acceptance scenarios: seeded two-pass crash-and-resume runs in child processes, and how they are scored.

A :class:`Scenario` is plain data: an input, a fault plan, the crash plans of the
passes before the final resume, a config. :func:`run_scenario` runs it through
the harness runner (real SIGKILLs, per-pass timeouts, resource limits);
:func:`evaluate` scores it from the ledger and the sink alone:

* gates: every pass ran (no exception, no timeout), every planned crash fired,
  every planned fault fired. A failed gate scores the scenario 0, with the reason;
* the lesson's thresholds (completion, duplicate rate, fail rate, resume time,
  from the single threshold file);
* exactly-once (no key committed twice) and the report-agrees-with-ledger check;
* checks proper to the scenario (idle resume, folded duplicates, degraded path,
  unified error ...).

Every failure message starts with the scenario's seed, crash plan and a replay
command (STYLE.md item 8).
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from batchlab.contract import BatchConfig
from batchlab.documents import Batch, Document, ident_of, try_parse
from batchlab.examples import EN_SENTENCES, example_documents, make_documents, write_input
from batchlab.faults import CRASH_AFTER_COMMIT, CRASH_DURING_CALL, CRASH_NONE, CRASH_RANDOM, CrashPlan, FaultPlan
from batchlab.ledger import read_events
from batchlab.metrics import Metrics, compute_metrics
from batchlab.pipeline import planned_calls
from batchlab.rundir import RunDir
from batchlab.runlock import RunDirLock
from batchlab.runner import STOP_NOW, PassResult, RunSpec, prepare, run_pass
from batchlab.service import LatencyModel
from batchlab.sink import read_outputs, read_puts
from batchlab.thresholds import Threshold
from batchlab.worker import WorkerExit

from .analysis import PassView, agreement_failures, completion_detail, duplicate_detail, pass_views, rules_for, some
from .sandbox import LIMITS, TODO_RE, death_reason
from .tasks import Context, register

#: How many hidden scenarios exist (they live in ``grader/hidden/``, left out of the student
#: distribution). ``tests/grader`` checks that this figure matches the hidden definitions.
HIDDEN_SCENARIO_COUNT = 4

#: Points of the checks every scenario has.
BASE_POINTS = {
    "completion": 1.0, "duplicate rate": 1.0, "fail rate": 0.5, "resume time": 0.5,
    "exactly-once": 1.0, "report agrees with ledger": 1.0,
}

LATENCY = LatencyModel(median_ms=2.0, sigma=0.4)


# ---------------------------------------------------------------------------
# inputs (all seeded: the same scenario always sees the same documents)
# ---------------------------------------------------------------------------


#: The whales' ids: a random-kill scenario makes every call of theirs slow (``FaultPlan.slow_ids``),
#: so each stays in flight several times longer than the latest random kill (tests/grader checks it).
WHALE_IDS = ("whale-0", "whale-1", "whale-2")


def whale_documents(seed: int) -> list[dict[str, Any]]:
    """A batch led by three ~100 KB documents (about 250 chunks each, the long tail).

    A whale stays in flight for most of a pass, so a random kill always lands
    while work is outstanding, however fast the rest of the batch goes.
    """
    docs = make_documents(200, seed=seed, max_bytes=4000)
    whales = []
    for w in range(3):
        sentences = [f"{EN_SENTENCES[(i * 7 + w) % len(EN_SENTENCES)]} (part {w}.{i})" for i in range(1100)]
        whales.append({"id": f"whale-{w}", "source": "handbook", "title": f"Whale {w}",
                       "content": " ".join(sentences), "metadata": {"lang": "en"}})
    return whales + docs


def duplicate_documents(seed: int) -> list[dict[str, Any]]:
    """The example batch plus 16 re-sent documents: same identity, different id case, spacing, Unicode form, metadata."""
    docs = example_documents()
    valid = [d for d in docs if isinstance(try_parse(d), Document)]
    extra: list[dict[str, Any]] = []
    for j, original in enumerate(valid[5:45:3][:12]):
        variant = dict(original)
        kind = j % 4
        if kind == 0:
            variant["id"] = original["id"].upper()
        elif kind == 1:
            variant["id"] = f"\t{original['id']}  "
        elif kind == 2:
            variant["content"] = "  " + original["content"].replace(" ", "   ", 5) + "\n\n"
        else:
            variant["metadata"] = {**original.get("metadata", {}), "updated_at": f"2026-12-{j + 1:02d}T00:00:00Z"}
            variant["title"] = original.get("title", "") + " (v2)"
        extra.append(variant)
    accented = "Café résumé naïve: the crème brûlée was déjà vu. " * 12
    extra.append({"id": "doc-accent", "source": "wiki", "content": unicodedata.normalize("NFC", accented)})
    for k in range(3):  # the NFD spelling of the same text is the same document
        extra.append({"id": "DOC-accent" if k else "doc-accent", "source": "wiki",
                      "content": unicodedata.normalize("NFD", accented)})
    out = list(docs)
    step = max(len(out) // (len(extra) + 1), 1)
    for n, entry in enumerate(extra):
        out.insert(min((n + 1) * step + n, len(out)), entry)
    return out


def invalid_mix_documents(seed: int) -> list[Any]:
    """The example batch (3 invalid entries) plus 2 more kinds of invalid entry: 5 of 126."""
    docs: list[Any] = example_documents()
    docs.insert(17, {"id": 4711, "source": "faq", "content": "An id must be a string."})
    docs.insert(60, "not a document at all")
    return docs


def large_documents(seed: int) -> list[dict[str, Any]]:
    return make_documents(1000, seed=seed, max_bytes=3000)


def small_documents(seed: int) -> list[dict[str, Any]]:
    return make_documents(40, seed=seed, max_bytes=3000, duplicates=1, invalid=1, empty=0)


INPUTS: dict[str, Callable[[int], list[dict[str, Any]]]] = {
    "example": lambda seed: example_documents(),
    "whales": whale_documents,
    "duplicates": duplicate_documents,
    "invalid_mix": invalid_mix_documents,
    "large": large_documents,
    "small": small_documents,
}


# ---------------------------------------------------------------------------
# scenario definitions
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Crash:
    """A crash plan relative to the input: ``at`` as a fraction of the planned calls, or an absolute count."""

    kind: str = CRASH_NONE
    at_fraction: float | None = None
    at: int = 0
    window: tuple[float, float] = (0.05, 0.35)

    def plan(self, calls: int) -> CrashPlan:
        at = self.at
        if self.at_fraction is not None:
            at = max(1, int(calls * self.at_fraction))
        return CrashPlan(kind=self.kind, at=at if self.kind in (CRASH_DURING_CALL, CRASH_AFTER_COMMIT) else 0,
                         window=self.window)


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    input: str
    seed: int
    plan: FaultPlan
    crashes: tuple[Crash, ...]
    config: BatchConfig = BatchConfig()
    latency: LatencyModel = LATENCY
    timeout_s: float = 60.0
    extra: tuple[str, ...] = ()
    hidden: bool = False
    flow: str = "passes"  # "passes" or "bad_input"

    def documents(self) -> list[dict[str, Any]]:
        return INPUTS[self.input](self.seed)

    def crash_plans(self, documents: list[dict[str, Any]]) -> list[CrashPlan]:
        calls = planned_calls(Batch(documents=list(documents)))
        return [c.plan(calls) for c in self.crashes]

    @property
    def points(self) -> float:
        return sum(BASE_POINTS.values()) + sum(EXTRA_POINTS[e] for e in self.extra)

    def describe_crashes(self, plans: Sequence[CrashPlan]) -> str:
        if self.flow == "bad_input":
            return "pass 1: the good batch; pass 2: a malformed batch file; pass 3: resume of the good batch"
        parts = []
        for n, p in enumerate(plans, start=1):
            if p.kind == CRASH_NONE:
                parts.append(f"pass {n}: no crash")
            elif p.kind == CRASH_RANDOM:
                parts.append(f"pass {n}: SIGKILL {p.window[0]:g}-{p.window[1]:g} s after its first service call")
            else:
                unit = "service call" if p.kind == CRASH_DURING_CALL else "sink commit"
                parts.append(f"pass {n}: SIGKILL {'during' if p.kind == CRASH_DURING_CALL else 'right after'} "
                             f"{unit} #{p.at}")
        parts.append(f"pass {len(plans) + 1}: final resume")
        return "; ".join(parts)


EXTRA_POINTS = {"idle resume": 1.0, "duplicates folded": 1.0, "degraded path": 1.0,
                "unified error": 1.0, "earlier state untouched": 1.0}

#: Poison documents (``FaultPlan.poison_ids``): valid documents whose every service call raises
#: ``MalformedResponseError``, a ``ValueError`` and not a service error. A processor that lets one
#: unexpected exception escape stops the whole batch there; a correct one ends the document ``failed``
#: (or ``degraded``) and goes on. One per scenario, so completion stays above 99 % for a correct run.
POISON_IDS = ("doc-00050",)
#: Permanently failing documents of ``permanent_and_invalid``: more than its concurrency (3) in every pass.
DEGRADED_IDS = ("doc-00003", "doc-00008", "doc-00012", "doc-00017", "doc-00025", "doc-00042", "doc-00060",
                "doc-00088", "doc-00101", "doc-00110")

PUBLIC_SCENARIOS: tuple[Scenario, ...] = (
    Scenario("clean_run", "a clean run commits every document once; the resume pass finds nothing to do",
             "example", 11, FaultPlan(seed=11), (Crash(),), extra=("idle resume",)),
    Scenario("transient_faults", "3 % transient faults and first-attempt failures are retried to completion",
             "example", 23, FaultPlan(seed=23, transient_rate=0.03, fail_first_rate=0.02, poison_ids=POISON_IDS),
             (Crash(CRASH_DURING_CALL, at_fraction=0.6),)),
    Scenario("crash_during_call", "a SIGKILL during a service call: the resume finishes the batch, nothing twice",
             "example", 31, FaultPlan(seed=31, transient_rate=0.01, poison_ids=("doc-00077",)),
             (Crash(CRASH_DURING_CALL, at_fraction=0.35),)),
    Scenario("crash_after_commit", "a SIGKILL right after a sink commit: the resume trusts the sink, no redo",
             "example", 47, FaultPlan(seed=47, transient_rate=0.01), (Crash(CRASH_AFTER_COMMIT, at=40),)),
    Scenario("random_kills", "three random SIGKILLs in a row, then a final resume",
             "whales", 59, FaultPlan(seed=59, transient_rate=0.02, slow_ids=WHALE_IDS, slow_factor=3.0),
             (Crash(CRASH_RANDOM),) * 3),
    Scenario("duplicates_in_input", "re-sent documents (id case, spacing, Unicode form, metadata) run once",
             "duplicates", 61, FaultPlan(seed=61, transient_rate=0.02), (Crash(CRASH_AFTER_COMMIT, at=25),),
             extra=("duplicates folded",)),
    # More degraded documents in each pass than config.concurrency: a slot that leaks on the degraded path
    # stalls the pass (and the stall watcher says so) instead of passing unnoticed.
    Scenario("permanent_and_invalid", "permanent faults take the degraded path; invalid documents end failed",
             "invalid_mix", 73,
             FaultPlan(seed=73, transient_rate=0.02, permanent_ids=DEGRADED_IDS),
             (Crash(CRASH_DURING_CALL, at_fraction=0.3),), config=BatchConfig(concurrency=3), extra=("degraded path",)),
    Scenario("bad_batch_input", "a malformed batch file is refused with the unified error; earlier state intact",
             "small", 83, FaultPlan(seed=83, transient_rate=0.02), (), extra=("unified error", "earlier state untouched"),
             flow="bad_input"),
    Scenario("large_batch", "1000 documents with 2 % faults and a crash mid-run",
             "large", 1000, FaultPlan(seed=1000, transient_rate=0.02, poison_ids=("doc-00480",)),
             (Crash(CRASH_DURING_CALL, at_fraction=0.5),),
             timeout_s=90.0),
)


# ---------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------


@dataclass
class ScenarioRun:
    """The raw outcome of a scenario: passes, metrics, the ledger's pass views, and flow-specific facts."""

    scenario: Scenario
    run_dir: Path
    documents: list[dict[str, Any]]
    crash_plans: list[CrashPlan]
    passes: list[PassResult]
    metrics: Metrics
    views: list[PassView]
    events: list[dict[str, Any]]
    duration_s: float
    facts: dict[str, Any] = field(default_factory=dict)


def _spec(sc: Scenario, ctx: Context, run_dir: Path, input_path: Path) -> RunSpec:
    return RunSpec(impl=ctx.impl, input=input_path, run_dir=run_dir, batch_id=f"batch-{sc.name}".replace("_", "-"),
                   config=sc.config, plan=sc.plan, latency=sc.latency, timeout_s=ctx.timeout(sc.timeout_s),
                   limits=LIMITS, env={"PYTHONDONTWRITEBYTECODE": "1"})


def _digest(run_dir: Path) -> dict[str, str]:
    files = sorted(p for p in [*run_dir.glob("sink.sqlite*"), *RunDir(run_dir).state.rglob("*")] if p.is_file())
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def run_scenario(sc: Scenario, ctx: Context) -> ScenarioRun:
    """Run every pass of ``sc`` against the implementation; collect the ledger's account of it."""
    base = ctx.area("runs")
    run_dir = base / sc.name
    documents = sc.documents()
    input_path = write_input(base / f"{sc.name}.input.json", documents, batch_id=f"batch-{sc.name}".replace("_", "-"))
    spec = _spec(sc, ctx, run_dir, input_path)
    plans = sc.crash_plans(documents)
    facts: dict[str, Any] = {}
    started = time.monotonic()
    if sc.flow == "bad_input":
        prepare(spec, fresh=True)
        passes = [run_pass(spec, 1)]
        if passes[0].returncode != 0:  # no good state to protect: the scenario is not scored anyway
            return _collect(sc, run_dir, documents, plans, passes, time.monotonic() - started, facts)
        before = _digest(run_dir)
        good = input_path.read_bytes()
        bad = '{"batch_id": "batch-bad-batch-input", "documents": [{"id": "doc-1", "content": "half a file'
        input_path.write_text(bad, encoding="utf-8")
        passes.append(run_pass(spec, 2))
        facts["digest_before"], facts["digest_after"] = before, _digest(run_dir)
        input_path.write_bytes(good)
        passes.append(run_pass(spec, 3))
    else:
        passes = run_watched_passes(spec, plans, facts, stall_s=ctx.timeout(STALL_S))
    return _collect(sc, run_dir, documents, plans, passes, time.monotonic() - started, facts)


#: A pass that writes nothing to the ledger (no call, no commit, no progress) for this long while its worker is
#: alive has stalled: it is stopped at once rather than left to its timeout. A correct processor on this
#: harness (2-10 ms calls) writes an event every few milliseconds, even on a loaded machine.
STALL_S = 15.0


class StallWatch:
    """Watches one pass's ledger events; ``stop()`` says :data:`STOP_NOW` once nothing happened for ``stall_s``."""

    def __init__(self, stall_s: float) -> None:
        self.stall_s = stall_s
        self.last = time.monotonic()
        self.events: list[dict[str, Any]] = []
        self.stalled_after: float | None = None

    def on_events(self, events: list[dict[str, Any]]) -> None:
        self.events.extend(events)
        self.last = time.monotonic()

    def stop(self) -> str | None:
        idle = time.monotonic() - self.last
        if self.stalled_after is None and idle > self.stall_s:
            self.stalled_after = idle
        return STOP_NOW if self.stalled_after is not None else None

    def diagnosis(self, pass_no: int, concurrency: int) -> str:
        """What the pass was doing when it stalled, in the words of the rule it probably broke."""
        calls: dict[str, int] = {}
        committed: dict[str, str] = {}
        for e in self.events:
            if e.get("ev") == "call_start":
                calls[e["ident"]] = calls.get(e["ident"], 0) + 1
            elif e.get("ev") == "sink_put":
                committed[e["ident"]] = e.get("mode", "full")
        names = {e["ident"]: e.get("doc_id", "?") for e in self.events if "ident" in e}
        degraded = [names[i] for i, mode in committed.items() if mode == "degraded"]
        open_docs = sorted(names[i] for i in calls if i not in committed)
        text = (f"pass {pass_no} stalled: no service call, commit or progress for {self.stalled_after:.0f} s while "
                f"its worker was alive, after {len(committed)} commits ({len(degraded)} degraded: "
                f"{some(sorted(degraded), 4)}); documents started and not committed: {some(open_docs, 4) or 'none'}. "
                "It was stopped rather than left to its timeout.\n"
                "slot-released-on-every-path: 并发槽（concurrency slot）必须在每条路径上释放（release on every path），"
                "包括降级路径（degraded path）和失败路径；否则降级文档一多于并发上限（config.concurrency），整批就卡住"
                "（stall）。把 acquire/release 放进 async with semaphore 或 try/finally（run_bounded）。")
        if len(degraded) >= concurrency:
            text += (f" This pass committed {len(degraded)} degraded documents, at least config.concurrency "
                     f"({concurrency}): a slot not given back on the degraded path would stall exactly here.")
        return text


def run_watched_passes(spec: RunSpec, plans: Sequence[CrashPlan], facts: dict[str, Any], *,
                       stall_s: float) -> list[PassResult]:
    """``batchlab.runner.run_passes``, with a stall watch on every pass; a stalled pass ends the run."""
    with RunDirLock(spec.run_dir).acquire(spec.lock_wait_s) as lock:
        prepare(spec, fresh=True)
        results: list[PassResult] = []
        for pass_no, crash in enumerate([*plans, CrashPlan()], start=1):
            watch = StallWatch(stall_s)
            result = run_pass(spec, pass_no, crash, on_events=watch.on_events, lock=lock, stop=watch.stop)
            results.append(result)
            if watch.stalled_after is not None:
                facts.setdefault("stalled", {})[pass_no] = watch.diagnosis(pass_no, spec.config.concurrency)
                break
            if result.returncode in (WorkerExit.INPUT, WorkerExit.IMPORT) or result.timed_out:
                break
    return results


def _collect(sc: Scenario, run_dir: Path, documents: list[dict[str, Any]], plans: list[CrashPlan],
             passes: list[PassResult], duration: float, facts: dict[str, Any]) -> ScenarioRun:
    events = read_events(RunDir(run_dir).ledger)
    puts = read_puts(RunDir(run_dir).sink)
    metrics = compute_metrics(documents, events, read_outputs(RunDir(run_dir).sink), puts)
    return ScenarioRun(scenario=sc, run_dir=run_dir, documents=documents, crash_plans=plans, passes=passes,
                       metrics=metrics, views=pass_views(documents, events, puts), events=events,
                       duration_s=duration, facts=facts)


def register_scenarios(scenarios: Sequence[Scenario]) -> None:
    for sc in scenarios:
        cost = 10.0 if sc.input in ("large", "whales") else 3.0
        register(f"run:{sc.name}", functools.partial(run_scenario, sc), cost=cost)


register_scenarios(PUBLIC_SCENARIOS)


# ---------------------------------------------------------------------------
# scoring
# ---------------------------------------------------------------------------


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
                "(a hang or an endless loop?)")
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
    for _pass_no, diagnosis in sorted((run.facts.get("stalled") or {}).items()):
        return str(diagnosis)
    for result in run.passes:
        planned = run.crash_plans[result.pass_no - 1] if result.pass_no <= len(run.crash_plans) else CrashPlan()
        expect_bad_input = sc.flow == "bad_input" and result.pass_no == 2
        if expect_bad_input:
            continue
        view = next((v for v in run.views if v.pass_no == result.pass_no), None)
        if planned.kind != CRASH_NONE and sc.flow == "passes":
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
    expected_passes = 3 if sc.flow == "bad_input" else len(run.crash_plans) + 1
    if len(run.passes) < expected_passes:
        return f"only {len(run.passes)} of {expected_passes} passes ran"
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
    valid = [d for d in (try_parse(r) for r in run.documents) if isinstance(d, Document)]
    expected = len(valid) - len({ident_of(d) for d in valid})
    reports = [v.report for v in run.views if v.report]
    if not reports:
        return False, "duplicates folded: no pass returned a report"
    said = reports[-1].get("duplicates_in_input")
    if said != expected:
        return False, (f"duplicates folded: the report counts {said} duplicates in the input, the input has "
                       f"{expected} (same source, id up to case and spaces, content up to Unicode form and spacing)")
    seen: dict[tuple[int, str], int] = {}
    first_id: dict[str, str] = {}
    for e in run.events:
        if e["ev"] == "sink_put":
            seen[(int(e["pass"]), e["ident"])] = seen.get((int(e["pass"]), e["ident"]), 0) + 1
            first_id.setdefault(e["ident"], e["doc_id"])
    twice = sorted(f"{first_id[i]} executed {n} times in pass {p}" for (p, i), n in seen.items() if n > 1)
    if twice:
        return False, f"duplicates folded: re-sent documents ran again within one pass: {some(twice, 3)}"
    return True, f"duplicates folded: {expected} re-sent documents recognised, none executed twice in a pass"


def _degraded_path(run: ScenarioRun) -> tuple[bool, str]:
    outputs = {rec.ident: rec for rec in read_outputs(RunDir(run.run_dir).sink)}
    permanent = set(run.scenario.plan.permanent_ids)
    wrong = []
    for raw in run.documents:
        doc = try_parse(raw)
        if isinstance(doc, Document) and doc.id.strip().casefold() in permanent:
            rec = outputs.get(ident_of(doc))
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


EXTRA_CHECKS: dict[str, Callable[[ScenarioRun], tuple[bool, str]]] = {
    "idle resume": _idle_resume,
    "duplicates folded": _duplicates_folded,
    "degraded path": _degraded_path,
    "unified error": _unified_error,
    "earlier state untouched": _state_untouched,
}


def with_overrides(sc: Scenario, **changes: Any) -> Scenario:
    return replace(sc, **changes)
