"""The run directory: one value that names every file a run keeps, so that no reader spells a name again.

A *run* is one batch in one run directory (see :mod:`batchlab.runner`)::

    RUN_DIR/spec.json        what to run (implementation, input, config, fault plan)
    RUN_DIR/ledger.jsonl     every side effect, every pass (ground truth)
    RUN_DIR/sink.sqlite      committed outputs
    RUN_DIR/state/           the processor's own checkpoint (``state_dir``)
    RUN_DIR/worker.lock      held by the one worker (or runner) that owns the run directory
    RUN_DIR/passN.stdout/.stderr  a pass's output, kept for feedback
    RUN_DIR/input.json       the input, when the demo or the dashboard generated it

The runner writes these files, the worker and the metrics read them, and the report, the dashboard,
chaos and the grader look at them: each of them asks a :class:`RunDir` for the path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .runlock import LOCK_NAME

SPEC = "spec.json"
LEDGER = "ledger.jsonl"
SINK = "sink.sqlite"
STATE = "state"
INPUT = "input.json"
OUTAGE_SWITCH = "outage.switch"


@dataclass(frozen=True)
class RunDir:
    """The files of one run directory; ``RunDir(path).ledger`` is ``path / "ledger.jsonl"``."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def spec(self) -> Path:
        return self.path / SPEC

    @property
    def ledger(self) -> Path:
        return self.path / LEDGER

    @property
    def sink(self) -> Path:
        return self.path / SINK

    @property
    def state(self) -> Path:
        """The processor's ``state_dir``: its checkpoint, whatever form the student chose."""
        return self.path / STATE

    @property
    def outage_switch(self) -> Path:
        """While this file exists, the run's service is unreachable (the dashboard's "断开外部模型")."""
        return self.path / OUTAGE_SWITCH

    @property
    def lock(self) -> Path:
        return self.path / LOCK_NAME

    @property
    def input(self) -> Path:
        """Where a generated input is written (a given input file stays where it is)."""
        return self.path / INPUT

    def stdout(self, pass_no: int) -> Path:
        return self.path / f"pass{pass_no}.stdout"

    def stderr(self, pass_no: int) -> Path:
        return self.path / f"pass{pass_no}.stderr"
