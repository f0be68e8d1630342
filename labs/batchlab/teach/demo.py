"""The demo: the lesson's whole story in one call (first run, crash, resume, metrics).

:func:`run_demo` is a plain keyword-only function; ``batchlab demo`` formats its
result, and notebooks call it directly.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..batchstream import open_batch
from ..contract import BatchConfig
from ..defaults import LESSON
from ..examples import make_documents, write_input
from ..faults import CRASH_DURING_CALL, CRASH_NONE, CRASH_RANDOM, CrashPlan, FaultPlan
from ..inventory import iter_unique, spills
from ..ledger import PassEnd
from ..metrics import Metrics, metrics_for_run
from ..paths import default_demo_impl, example_input, kit_root
from ..pipeline import planned_calls
from ..rundir import RunDir
from ..runner import EventsCallback, PassResult, RunSpec, run_passes
from ..service import LatencyModel


def new_run_dir(prefix: str = "demo") -> Path:
    """A fresh ``runs/PREFIX-TIMESTAMP`` folder, so that no earlier run is ever overwritten."""
    base = kit_root() / "runs"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run = base / f"{prefix}-{stamp}"
    n = 1
    while run.exists():
        n += 1
        run = base / f"{prefix}-{stamp}-{n}"
    return run


#: The line a TODO placeholder of the student module leaves in a worker's stderr.
_TODO_LINE = re.compile(r"^NotImplementedError: (TODO step (\d\d)\b.*)$", re.MULTILINE)


@dataclass(frozen=True)
class Unfinished:
    """Why a run stopped on an unfinished student module: the TODO it hit and the steps still to write."""

    todo: str
    steps_left: list[tuple[str, str]]

    @property
    def sentence(self) -> str:
        """The sentence the grader and ``check()`` give for a TODO placeholder."""
        return f"not implemented yet ({self.todo})"

    def lines(self) -> list[str]:
        from ..steps import STEPS

        left = ", ".join(f"{num} {name}" for num, name in self.steps_left) or "none (see the TODO above)"
        first = self.steps_left[0] if self.steps_left else next(iter(STEPS.items()))
        notebook = next((p.name for p in sorted((kit_root() / "notebooks").glob(f"{first[0]}_*.ipynb"))),
                        f"the notebook {first[0]}")
        return [
            f"your module is not finished yet (尚未完成): {self.sentence}",
            f"steps with TODOs left: {left}",
            f"next: notebooks/{notebook}, then `batchlab check {first[1]}`; "
            "the demo runs your module once steps 01-05 are written",
        ]


def unfinished_module(impl: Path, passes: Sequence[PassResult]) -> Unfinished | None:
    """The TODO that stopped a pass, if a pass raised on one (None when the module ran its own code)."""
    for p in passes:
        if p.end != PassEnd.STUDENT_ERROR:
            continue
        found = _TODO_LINE.findall(p.stderr)
        if found:
            from .notebook import overview

            todo = overview(impl).todo
            from ..steps import STEPS

            left = [(num, name) for num, name in STEPS.items() if todo.get(num, 0)]
            return Unfinished(todo=found[-1][0].strip(), steps_left=left)
    return None


@dataclass
class DemoResult:
    run_dir: Path
    impl: Path
    input: Path
    crash: CrashPlan
    passes: list[PassResult]
    metrics: Metrics
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def unfinished(self) -> Unfinished | None:
        return unfinished_module(self.impl, self.passes)

    @property
    def crash_fired(self) -> bool:
        return bool(self.metrics.crashes) or self.crash.kind == CRASH_NONE

    @property
    def ok(self) -> bool:
        return self.metrics.meets_thresholds() and self.crash_fired

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir), "impl": str(self.impl), "input": str(self.input),
            "settings": self.settings,
            "crash": {"kind": self.crash.kind, "at": self.crash.at, "fired": self.crash_fired},
            "passes": [{"pass": p.pass_no, "outcome": p.outcome, "duration_s": round(p.duration_s, 3)}
                       for p in self.passes],
            "metrics": self.metrics.summary(),
            "thresholds": {t.metric: {"value": v, "bound": t.text, "ok": ok} for t, v, ok in self.metrics.checks()},
            "ok": self.ok,
            "unfinished": (None if (u := self.unfinished) is None else
                           {"todo": u.todo, "message": u.sentence, "steps_left": [n for n, _ in u.steps_left]}),
        }


def run_demo(
    *,
    input_path: Path | None = None,
    docs: int | None = None,
    seed: int = LESSON.seed,
    fault_rate: float = LESSON.fault_rate,
    crash: str = CRASH_DURING_CALL,
    at: int | None = None,
    concurrency: int = LESSON.concurrency,
    impl: Path | None = None,
    run_dir: Path | None = None,
    latency_ms: float = LESSON.latency_ms,
    on_events: EventsCallback | None = None,
    on_pass: Callable[[PassResult], None] | None = None,
) -> DemoResult:
    """Pass 1 with ``fault_rate`` transient faults and a crash, then the resume pass; metrics of both."""
    run = run_dir or new_run_dir()
    if docs is not None:
        source = write_input(RunDir(run).input, make_documents(docs, seed=seed))
    else:
        source = Path(input_path or example_input())
    # Streamed, validated first (raises BatchInputError before anything is written): the demo's own input is the
    # lesson's 120 documents, but --input takes any batch, and nothing here needs it as a list.
    batch = open_batch(source)
    if crash == CRASH_DURING_CALL and at is None:
        at = max(1, int(planned_calls(iter_unique(batch, on_disk=spills(len(batch)))) * 0.4))
    elif at is None:
        at = max(1, int(len(batch) * 0.4))
    plan = CrashPlan(kind=crash, at=at if crash not in (CRASH_NONE, CRASH_RANDOM) else 0,
                     window=(0.05, 0.3))
    impl_path = Path(impl or default_demo_impl())
    spec = RunSpec(impl=impl_path, input=source, run_dir=run, batch_id=batch.header.batch_id or "batch-001",
                   config=BatchConfig(concurrency=concurrency), plan=FaultPlan(seed=seed, transient_rate=fault_rate),
                   latency=LatencyModel(median_ms=latency_ms))
    passes = run_passes(spec, [plan], fresh=False, on_events=on_events, on_pass=on_pass)
    return DemoResult(run_dir=run, impl=impl_path, input=source, crash=plan, passes=passes,
                      metrics=metrics_for_run(run),
                      settings={"seed": seed, "fault_rate": fault_rate, "concurrency": concurrency,
                                "latency_ms": latency_ms, "documents": len(batch)})
