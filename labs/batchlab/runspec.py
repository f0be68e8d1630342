"""What defines a run: :class:`RunSpec` (written to ``spec.json``, read back by the worker and every reader of a
run directory) and the child's resource :class:`Limits`. :mod:`batchlab.runner` re-exports both."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .contract import BatchConfig
from .errors import KitError
from .faults import FaultPlan
from .rundir import RunDir
from .runlock import DEFAULT_LOCK_WAIT_S
from .service import LatencyModel

__all__ = ["Limits", "RunSpec", "read_spec"]


@dataclass(frozen=True)
class Limits:
    """Resource limits for a child (the grader's protection against student code).

    :func:`batchlab.host.child_popen_kwargs` sets them in the child before exec
    (the address-space limit on Linux only: see :mod:`batchlab.host`).
    """

    cpu_s: int | None = None
    memory_bytes: int | None = None
    file_bytes: int | None = None
    processes: int | None = None  #: RLIMIT_NPROC: processes and threads of the child's user (root is exempt)


@dataclass
class RunSpec:
    """Everything that defines a run, apart from its crash plans."""

    impl: Path
    input: Path
    run_dir: Path
    batch_id: str = "batch-001"
    config: BatchConfig = field(default_factory=BatchConfig)
    plan: FaultPlan = field(default_factory=FaultPlan)
    latency: LatencyModel = field(default_factory=LatencyModel)
    durable: str = "process"
    timeout_s: float = 120.0
    output_cap: int = 64_000
    limits: Limits | None = None
    env: dict[str, str] = field(default_factory=dict)
    lock_wait_s: float = DEFAULT_LOCK_WAIT_S
    #: A sandbox around the worker's command line (the grader's bubblewrap: ``grader/bubblewrap.py``), or None.
    wrap: Callable[[list[str]], list[str]] | None = None
    #: Service, sink and ledger on the harness side of a socket (:mod:`batchlab.harness`), not in the worker.
    boundary: bool = False

    def to_dict(self) -> dict[str, Any]:
        """What ``spec.json`` holds (the worker and every reader of a run directory read it back)."""
        return {
            "impl": str(Path(self.impl).resolve()), "input": str(Path(self.input).resolve()),
            "batch_id": self.batch_id, "config": self.config.to_dict(), "plan": self.plan.to_dict(),
            "latency": self.latency.to_dict(), "durable": self.durable,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, run_dir: str | Path) -> RunSpec:
        """The spec :meth:`to_dict` wrote; ``run_dir`` is where it was read (the file does not name it).

        ``impl`` and ``input`` must be strings; the other parts take their defaults when absent.
        Raises ``ValueError`` or ``TypeError`` for anything else that is not a spec.
        """
        if not isinstance(data, Mapping) or not isinstance(data.get("input"), str):
            raise ValueError("spec.json is not an object with an `input` path")
        if not isinstance(data.get("impl", ""), str):
            raise ValueError("the `impl` of spec.json is not a path")
        return cls(impl=Path(data.get("impl", "")), input=Path(data["input"]), run_dir=Path(run_dir),
                   batch_id=str(data.get("batch_id", "batch-001")),
                   config=BatchConfig.from_dict(dict(data.get("config") or {})),
                   plan=FaultPlan.from_dict(data.get("plan") or {}),
                   latency=LatencyModel(**dict(data.get("latency") or {})),
                   durable=str(data.get("durable", "process")))


def read_spec(run_dir: str | Path) -> RunSpec:
    """The spec of a run directory (:meth:`RunSpec.from_dict`), or a ``run_dir_corrupt`` error naming the file."""
    path = RunDir(Path(run_dir)).spec
    try:
        return RunSpec.from_dict(json.loads(path.read_text(encoding="utf-8")), run_dir=run_dir)
    except (OSError, ValueError, TypeError, RecursionError) as exc:
        raise KitError(f"{path} cannot be read: {type(exc).__name__}: {exc}", code="run_dir_corrupt",
                       details={"run_dir": str(run_dir)},
                       hints=["A run directory has the spec.json `batchlab run` wrote; start a new --run-dir."]) \
            from None
