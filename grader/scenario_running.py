"""Running an acceptance scenario: every pass through the harness runner, in child processes (real SIGKILLs,
per-pass timeouts, resource limits, a stall watch), and the ledger's account of it (:class:`ScenarioRun`).
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchlab.backfill import backfill_spec
from batchlab.examples import write_input
from batchlab.faults import CrashPlan
from batchlab.ledger import read_events
from batchlab.metrics import Metrics, compute_metrics
from batchlab.rundir import RunDir
from batchlab.runlock import RunDirLock
from batchlab.runner import STOP_NOW, PassResult, RunSpec, prepare, run_pass
from batchlab.sink import read_outputs, read_puts
from batchlab.worker import WorkerExit

from .analysis import PassView, pass_views, some
from .bubblewrap import Sandbox
from .reaper import reap_adopted
from .results import GraderError
from .sandbox import LIMITS, current_sandbox, sandbox_failed
from .scenario_model import FORGET_CHECKPOINT, Scenario
from .tasks import Context, register


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
    """The run's spec: service, sink and ledger on the harness side (``boundary``), the worker in the session's
    sandbox (:func:`worker_wrap`)."""
    sandbox = current_sandbox()
    wrap = functools.partial(worker_wrap, sandbox, run_dir.resolve(), [ctx.impl, input_path.resolve()]) \
        if sandbox.active else None
    return RunSpec(impl=ctx.impl, input=input_path, run_dir=run_dir, batch_id=f"batch-{sc.name}".replace("_", "-"),
                   config=sc.config, plan=sc.plan, latency=sc.latency, timeout_s=ctx.timeout(sc.timeout_s),
                   limits=LIMITS, env={"PYTHONDONTWRITEBYTECODE": "1"}, wrap=wrap, boundary=True)


def worker_wrap(sandbox: Sandbox, run_dir: Path, readable: Sequence[Path], cmd: list[str]) -> list[str]:
    """A worker's command in the sandbox: of its run directory it sees only its spec and lock (read-only) and
    writes only its ``state`` folder (the checkpoint); the ledger and the sink, which the harness side writes,
    are not there for it to open. The state folder is made when missing: bubblewrap binds only what exists, and a
    scenario may delete it between passes (``checkpoint_lost``), as an operator may."""
    run = RunDir(run_dir)
    run.state.mkdir(parents=True, exist_ok=True)
    return sandbox.hiding(hidden=[run_dir]).command(cmd, writable=[run.state.resolve()],
                                                    readable=[*readable, run.spec, run.lock])


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
        between = functools.partial(forget_checkpoint, run_dir, facts) if sc.between == FORGET_CHECKPOINT else None
        passes = run_watched_passes(spec, plans, facts, stall_s=ctx.timeout(STALL_S), before_pass=between)
        if sc.flow == "backfill" and passes[-1].returncode == 0 and not facts.get("stalled"):
            passes.append(run_backfill_pass(spec, len(passes) + 1, facts, stall_s=ctx.timeout(STALL_S)))
    reap_adopted(current_sandbox().active)
    broken = [p for p in passes if sandbox_failed(p.stderr)]
    if broken:
        raise GraderError(f"the sandbox did not start pass {broken[0].pass_no}: {broken[0].stderr.strip()[:800]}")
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


def forget_checkpoint(run_dir: Path, facts: dict[str, Any], pass_no: int) -> None:
    """Delete the state folder (the checkpoint, whatever its files) before a resume pass; note what was there."""
    state = RunDir(run_dir).state
    if pass_no > 1 and state.exists():
        files = sorted(str(p.relative_to(state)) for p in state.rglob("*") if p.is_file())
        shutil.rmtree(state)
        facts.setdefault("forgotten", {})[pass_no] = files


def run_watched_passes(spec: RunSpec, plans: Sequence[CrashPlan], facts: dict[str, Any], *,
                       stall_s: float, before_pass: Callable[[int], None] | None = None) -> list[PassResult]:
    """``batchlab.runner.run_passes``, with a stall watch on every pass; a stalled pass ends the run.

    ``before_pass(pass_no)``, when given, runs before each pass (the scenario's action between passes).
    """
    with RunDirLock(spec.run_dir).acquire(spec.lock_wait_s) as lock:
        prepare(spec, fresh=True)
        results: list[PassResult] = []
        for pass_no, crash in enumerate([*plans, CrashPlan()], start=1):
            if before_pass is not None:
                before_pass(pass_no)
            watch = StallWatch(stall_s)
            result = run_pass(spec, pass_no, crash, on_events=watch.on_events, lock=lock, stop=watch.stop)
            results.append(result)
            if watch.stalled_after is not None:
                facts.setdefault("stalled", {})[pass_no] = watch.diagnosis(pass_no, spec.config.concurrency)
                break
            if result.returncode in (WorkerExit.INPUT, WorkerExit.IMPORT) or result.timed_out:
                break
    return results


def run_backfill_pass(spec: RunSpec, pass_no: int, facts: dict[str, Any], *, stall_s: float) -> PassResult:
    """The backfill pass (:func:`batchlab.backfill.backfill_spec`), with the documents degraded before it in ``facts``."""
    facts["degraded_before_backfill"] = {rec.ident: rec.doc_id for rec in read_outputs(RunDir(spec.run_dir).sink)
                                         if rec.mode == "degraded"}
    passing = backfill_spec(spec)
    with RunDirLock(spec.run_dir).acquire(spec.lock_wait_s) as lock:
        prepare(passing)
        watch = StallWatch(stall_s)
        result = run_pass(passing, pass_no, on_events=watch.on_events, lock=lock, stop=watch.stop)
        prepare(spec)
    if watch.stalled_after is not None:
        facts.setdefault("stalled", {})[pass_no] = watch.diagnosis(pass_no, spec.config.concurrency)
    return result


def _collect(sc: Scenario, run_dir: Path, documents: list[dict[str, Any]], plans: list[CrashPlan],
             passes: list[PassResult], duration: float, facts: dict[str, Any]) -> ScenarioRun:
    events = read_events(RunDir(run_dir).ledger)
    puts = read_puts(RunDir(run_dir).sink)
    metrics = compute_metrics(documents, events, read_outputs(RunDir(run_dir).sink), puts)
    return ScenarioRun(scenario=sc, run_dir=run_dir, documents=documents, crash_plans=plans, passes=passes,
                       metrics=metrics, views=pass_views(documents, events, puts), events=events,
                       duration_s=duration, facts=facts)


def scenario_cost(sc: Scenario) -> float:
    """A scenario's rough wall time (idle seconds), so that the scheduler starts the longest first.

    Each pass is a worker start and a batch through the simulated service: more passes, slow whales, an
    outage and a low ``config.concurrency`` (the same calls fewer at a time) make a run longer (measured
    in README "Benchmarks": ``random_kills`` and the hidden low-concurrency scenarios are the longest).
    """
    if sc.flow == "bad_input":
        return 3.0  # three short passes over a small input
    passes = len(sc.crashes) + 1 + (sc.flow == "backfill")
    seconds = 1.5 + 1.5 * passes + (3.0 if sc.input == "whales" else 0.0) + (2.0 if sc.plan.outages else 0.0)
    return seconds * max(1.0, 4 / max(1, sc.config.concurrency))


def register_scenarios(scenarios: Sequence[Scenario]) -> None:
    for sc in scenarios:
        register(f"run:{sc.name}", functools.partial(run_scenario, sc), cost=scenario_cost(sc))
