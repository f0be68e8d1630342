"""The worker process: runs one pass of one implementation file, so that it can be killed for real.

``python -m batchlab.worker RUN_DIR --pass N [--crash KIND --at K] [--t0 T]``

It reads ``RUN_DIR/spec.json`` (written by :mod:`batchlab.runner`), records the
pass start in the ledger before anything else, imports the implementation from
its file path, builds the service and the sink (which record every side effect)
and awaits ``process_documents_batch``. Exit codes: 0 done, 2 bad batch input,
3 the implementation failed to import or lacks the entry point, 4 it raised.
A crash plan makes the service or the sink SIGKILL this very process.
"""

from __future__ import annotations

import time

_BOOT = time.time()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import importlib.machinery  # noqa: E402
import importlib.util  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402
from types import ModuleType  # noqa: E402
from typing import Any  # noqa: E402

from .ledger import Ledger  # noqa: E402

EXIT_INPUT = 2
EXIT_IMPORT = 3
EXIT_RAISED = 4


class _SourceOnlyLoader(importlib.machinery.SourceFileLoader):
    """Compiles the file from its source every time: never reads or writes ``__pycache__``.

    A cached ``.pyc`` is trusted when the source's mtime (whole seconds) and size match,
    so an edit saved within the same second at the same size would run the old code.
    """

    def get_code(self, fullname: str) -> Any:
        return compile(self.get_data(self.path), self.path, "exec", dont_inherit=True)


def load_impl(path: str | Path, name: str = "student_document_processor") -> ModuleType:
    """Import an implementation file by path (a fresh module object, compiled from its source, every time)."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(name, path, loader=_SourceOnlyLoader(name, str(path)))
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class LedgerProgress:
    """The ``progress`` callback given to the processor: state changes go to the ledger."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def __call__(self, doc_id: str, state: str, *, error: str | None = None, attempts: int = 0) -> None:
        self._ledger.emit("state", doc_id=str(doc_id), state=str(state), error=error, attempts=attempts)


def _report_dict(report: Any) -> dict[str, Any]:
    if hasattr(report, "to_dict"):
        return dict(report.to_dict())
    if isinstance(report, dict):
        return report
    raise TypeError(f"process_documents_batch returned {type(report).__name__}, not a BatchReport")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m batchlab.worker")
    parser.add_argument("run_dir")
    parser.add_argument("--pass", dest="pass_no", type=int, default=1)
    parser.add_argument("--crash", default="none")
    parser.add_argument("--at", type=int, default=0)
    parser.add_argument("--t0", type=float, default=None)
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir)
    spec = json.loads((run_dir / "spec.json").read_text(encoding="utf-8"))
    ledger = Ledger(run_dir / "ledger.jsonl", pass_no=args.pass_no)
    ledger.emit("pass_start", t0=args.t0 or _BOOT, boot=_BOOT, batch_id=spec["batch_id"], impl=spec["impl"],
                crash=args.crash, at=args.at)

    from .contract import BatchConfig
    from .documents import load_batch
    from .errors import BatchInputError
    from .faults import CrashPlan, FaultPlan
    from .service import LatencyModel, SimulatedService
    from .sink import SqliteSink

    try:
        batch = load_batch(spec["input"])
    except BatchInputError as exc:
        ledger.emit("input_error", error=exc.to_dict())
        print(exc.to_json())
        return EXIT_INPUT
    try:
        module = load_impl(spec["impl"])
        entry = getattr(module, "process_documents_batch", None)
        if entry is None or not inspect.iscoroutinefunction(entry):
            raise AttributeError("the module has no `async def process_documents_batch(...)`")
    except BaseException as exc:  # noqa: BLE001 - anything at import is the student's error
        ledger.emit("student_error", phase="import", error=f"{type(exc).__name__}: {exc}",
                    traceback=traceback.format_exc(limit=8))
        traceback.print_exc()
        return EXIT_IMPORT

    crash = CrashPlan(kind=args.crash, at=args.at) if args.crash != "random" else CrashPlan()
    service = SimulatedService(plan=FaultPlan.from_dict(spec["plan"]), latency=LatencyModel(**spec["latency"]),
                               ledger=ledger, crash=crash)
    sink = SqliteSink(run_dir / "sink.sqlite", ledger=ledger, pass_no=args.pass_no, crash=crash,
                      durable=spec.get("durable", "process"))
    state_dir = run_dir / "state"
    state_dir.mkdir(exist_ok=True)
    try:
        report = asyncio.run(entry(
            batch.documents, batch_id=spec["batch_id"], service=service, sink=sink, state_dir=state_dir,
            config=BatchConfig.from_dict(spec["config"]), progress=LedgerProgress(ledger)))
        report_dict = _report_dict(report)
    except BaseException as exc:  # noqa: BLE001 - SystemExit and KeyboardInterrupt from student code too
        name = type(exc).__name__
        ledger.emit("student_error", phase="run", error=f"{name}: {exc}", traceback=traceback.format_exc(limit=8))
        traceback.print_exc()
        return EXIT_RAISED
    finally:
        sink.close()
    ledger.emit("pass_end", report=report_dict, calls=service.calls, commits=sink.commits)
    (run_dir / f"pass{args.pass_no}.report.json").write_text(
        json.dumps(report_dict, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
