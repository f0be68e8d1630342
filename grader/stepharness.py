"""The harness side of the step tests' batch probes: service, sink and ledger in the grader's process.

The step probes that run documents through the harness (``documents``, ``deadline``, ``batch_pass``)
used to build the service, the sink and the ledger inside the probe child, next to the student's code,
which could then patch the service, write ledger lines or commit rows and earn step points. Here, as the
acceptance scenarios do (:mod:`batchlab.harness`), they live on a :class:`StepHarness` in this process,
a :class:`batchlab.harness.HarnessSide` with the two things only the step tests need:

* a retry guard (``guard``): past that many attempts on one chunk the call fails permanently
  (:class:`batchlab.testing.GuardedService`), so a processor that retries forever still ends;
* a crash point the runner cannot place, SIGKILL *before* the K-th sink write (``kill_before_put_at``),
  recorded as a ``crash`` event of kind ``before_commit`` first.

The probe child gets one end of a socket pair (an inherited descriptor, ``harness_fd`` in its arguments;
it crosses bubblewrap as the scenarios' does) and hands the processor remote proxies
(:mod:`batchlab.remote`). The facts a step test judges (calls, attempts, commits, crashes, states) are
then the lines this side wrote (:attr:`StepPass.events`, kept in memory, never read back from a file the
child could reach) and the sink it committed to. The records live in a folder of their own, outside the
probe's work directory (in the sandbox the child sees neither file). A probe whose pass sent events only
the harness writes, or whose records something else wrote (no sandbox: same user), is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from batchlab.docmodel import ident_of
from batchlab.faults import CrashPlan, FaultPlan
from batchlab.harness import HarnessSide
from batchlab.harness_records import HarnessSink, seal_of
from batchlab.ledger import Ev, parse_event
from batchlab.rundir import RunDir
from batchlab.service import LatencyModel
from batchlab.testing import GuardedService
from batchlab.wire import doc_from_wire

from .forgery import RULE
from .sandbox import Verdict, start_probe

#: The error type of a pass refused because its records were forged.
FORGED = "ForgedRecords"

#: The crash kind of a kill before the K-th sink write (the in-process double wrote the same).
BEFORE_COMMIT = "before_commit"


class StepHarness(HarnessSide):
    """A :class:`HarnessSide` with the step tests' retry guard and their kill before the K-th sink write."""

    def __init__(self, run_dir: Path, *, pass_no: int, crash: CrashPlan, plan: FaultPlan, latency: LatencyModel,
                 guard: int | None = None, kill_before_put_at: int = 0, durable: str = "process") -> None:
        super().__init__(run_dir, pass_no=pass_no, crash=crash, plan=plan, latency=latency, durable=durable)
        self.guard = guard
        self.kill_before_put_at = kill_before_put_at
        self.attempted_puts = 0

    async def _handle(self, frame: dict[str, Any]) -> None:
        if frame.get("op") in ("hello", "embed") and self.service is None and not self.halted:
            self.service = GuardedService(plan=self.plan, latency=self.latency, ledger=self.ledger, crash=self.crash,
                                          on_crash=self._crashed, outage_switch=self.run.outage_switch,
                                          guard=self.guard)
        await super()._handle(frame)

    def _put(self, frame: dict[str, Any]) -> int:
        self.attempted_puts += 1
        if self.attempted_puts == self.kill_before_put_at:
            doc = doc_from_wire(frame.get("doc"))
            self.ledger.emit(Ev.CRASH, kind=BEFORE_COMMIT, at=self.attempted_puts, doc_id=doc.id, ident=ident_of(doc))
            self._crashed()
        return super()._put(frame)

    @property
    def guard_trips(self) -> int:
        return self.service.guard_trips if isinstance(self.service, GuardedService) else 0


@dataclass
class StepPass:
    """One probe pass behind the boundary: the probe's verdict and what the harness side recorded of it."""

    verdict: Verdict
    events: list[dict[str, Any]]
    forged: list[str] = field(default_factory=list)
    guard_trips: int = 0


def parse_lines(data: bytes) -> list[dict[str, Any]]:
    """Ledger lines as events (what :func:`batchlab.ledger.iter_events` reads from a file)."""
    return [event for raw in data.splitlines() if (event := parse_event(raw)) is not None]


def harness_args(args: dict[str, Any]) -> dict[str, Any]:
    """The :class:`StepHarness` settings a probe's arguments name (the rest goes to the probe)."""
    crash = CrashPlan(**args["crash"]) if args.get("crash") else CrashPlan()
    return {"crash": crash, "plan": FaultPlan.from_dict(args.get("plan", {})),
            "latency": LatencyModel(**args.get("latency", {})), "guard": args.get("guard"),
            "kill_before_put_at": int(args.get("kill_before_put_at", 0))}


def run_step_pass(impl: Path, check: str, args: dict[str, Any], *, workdir: Path, records: Path, pass_no: int,
                  timeout_s: float, env: dict[str, str] | None = None) -> StepPass:
    """Run probe ``check`` with a :class:`StepHarness` serving it; its records go to ``records``."""
    records.mkdir(parents=True, exist_ok=True)
    side = StepHarness(records, pass_no=pass_no, **harness_args(args))
    try:
        probe = start_probe(impl, check, {**args, "harness_fd": side.child_fd}, workdir=workdir, env=env,
                            pass_fds=(side.child_fd,))
    except BaseException:
        side.close(drain=False)
        raise
    side.start(probe.proc)
    verdict = probe.finish(timeout_s)
    if verdict.status == "timeout":
        side.halt()
    side.close(drain=verdict.status != "timeout")
    forged = list(side.foreign)
    if side.refused:
        forged.append(f"pass {pass_no}: {side.refused} ledger events sent that only the harness writes "
                      "(calls, commits, crashes)")
    events = parse_lines(bytes(side.ledger.written))
    return StepPass(verdict=refuse_forged(verdict, forged), events=events, forged=forged,
                    guard_trips=side.guard_trips)


def refuse_forged(verdict: Verdict, forged: list[str]) -> Verdict:
    """A pass whose records were forged becomes a student error that says so (no point rests on it)."""
    if not forged or verdict.is_grader_error:
        return verdict
    return replace(verdict, status="student_error", error={
        "type": FORGED,
        "message": ("forged records: the service, the sink and the ledger are kept by the grader, outside your "
                    f"process, and it found what it did not write: {'; '.join(forged[:3])}. Only calls made with "
                    "`await service.embed(...)` and commits made with `sink.put(...)` count: this run is not "
                    "scored.\n" + RULE),
        "traceback": ""})


def sink_untouched(records: Path) -> str | None:
    """After the last pass: None if the sink is as the harness side sealed it, else what changed."""
    seal = seal_of(records)
    sink_path = RunDir(records).sink
    if seal is None or not sink_path.exists():
        return None
    sink = HarnessSink(sink_path)
    try:
        same = sink.digest() == seal.sink_digest
    finally:
        sink.close()
    return None if same else "the sink changed after the last pass ended"
