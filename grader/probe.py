"""The probe: runs one named check against an implementation file, inside a sandboxed child process.

``python grader/probe.py IMPL CHECK ARGS_JSON VERDICT_JSON``

Student code never runs in the grader's own process (STYLE.md item 13): the
parent (:mod:`grader.sandbox`) starts this script with a timeout, resource
limits and capped output, and reads back one JSON verdict::

    {"check": ..., "status": "ok" | "todo" | "student_error" | "import_error" | "grader_error",
     "data": ..., "error": {"type", "message", "traceback"}}

The verdict is written to ``VERDICT_JSON`` (and printed as the last line of
stdout, for a person reading the log). The probe only *collects* facts (keys,
delays, checkpoint entries, a ledger of what a batch run did); the parent
judges them, so every verdict message is written in one place.

This file imports nothing from the grader package: it runs by path, with the
harness (``batchlab``) as its only dependency besides the implementation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from batchlab.contract import PROCESSING, BatchConfig
from batchlab.documents import Document, ident_of
from batchlab.faults import CrashPlan, FaultPlan, kill_self
from batchlab.ledger import Ledger
from batchlab.service import LatencyModel, PermanentServiceError, SimulatedService
from batchlab.sink import SqliteSink
from batchlab.worker import LedgerProgress, load_impl

IMPL_PATH = ""


class StudentCodeError(Exception):
    """Wraps an exception that escaped the student's code (as opposed to a bug of this probe)."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(str(exc))
        self.original = exc


@contextlib.contextmanager
def student_code() -> Iterator[None]:
    """Everything raised inside this block is the implementation's doing, not the grader's."""
    try:
        yield
    except StudentCodeError:
        raise
    except BaseException as exc:  # noqa: BLE001 - SystemExit and KeyboardInterrupt from student code too
        raise StudentCodeError(exc) from exc


def need(module: Any, name: str) -> Any:
    """The attribute ``name`` of the implementation, or a student error naming what is missing."""
    value = getattr(module, name, None)
    if value is None:
        raise StudentCodeError(AttributeError(f"the module has no `{name}` (see the module docstring)"))
    return value


def describe(exc: BaseException, module: Any = None) -> dict[str, Any]:
    illegal = getattr(module, "IllegalTransition", None) if module is not None else None
    return {
        "type": type(exc).__name__,
        "message": str(exc)[:800],
        "is_value_error": isinstance(exc, ValueError),
        "is_illegal_transition": bool(isinstance(illegal, type) and isinstance(exc, illegal)),
        "is_todo": isinstance(exc, NotImplementedError),
    }


def entry_dict(entry: Any) -> dict[str, Any] | None:
    """A checkpoint entry as plain data, whether the student returns a dataclass or a mapping."""
    if entry is None:
        return None

    def field(name: str) -> Any:
        if isinstance(entry, dict):
            return entry.get(name)
        return getattr(entry, name, None)

    attempts = field("attempts")
    return {"state": None if field("state") is None else str(field("state")),
            "attempts": attempts if isinstance(attempts, int) else None,
            "last_error": None if field("last_error") is None else str(field("last_error")),
            "doc_id": None if field("doc_id") is None else str(field("doc_id"))}


# ---------------------------------------------------------------------------
# checks: each takes (module, args) and returns JSON-ready data
# ---------------------------------------------------------------------------


def check_import(module: Any, args: dict[str, Any]) -> dict[str, Any]:
    names = ("CheckpointStore", "make_idempotency_key", "backoff_delay", "process_documents_batch")
    return {"names": {name: hasattr(module, name) for name in names},
            "batch_is_async": asyncio.iscoroutinefunction(getattr(module, "process_documents_batch", None))}


def check_checkpoint_script(module: Any, args: dict[str, Any]) -> list[dict[str, Any]]:
    """Run a list of store operations; record each result or exception (illegal moves are expected to raise)."""
    store_cls = need(module, "CheckpointStore")
    state_dir, batch_id = args["state_dir"], args.get("batch_id", "batch-ckpt")
    store: Any = None
    results: list[dict[str, Any]] = []
    for op in args["ops"]:
        name = op[0]
        try:
            with student_code():
                if name == "open":
                    store = store_cls(state_dir, batch_id)
                    value: Any = None
                elif name == "transition":
                    _, key, state, doc_id, error = op
                    kwargs: dict[str, Any] = {"doc_id": doc_id} if doc_id is not None else {}
                    if error is not None:
                        kwargs["error"] = error
                    value = entry_dict(store.transition(key, state, **kwargs))
                elif name == "get":
                    value = entry_dict(store.get(op[1]))
                elif name == "entries":
                    value = {str(k): entry_dict(v) for k, v in dict(store.entries()).items()}
                elif name == "close":
                    store.close()
                    value = None
                else:
                    raise ValueError(f"unknown op {name}")
            results.append({"op": op, "value": value})
        except StudentCodeError as exc:
            if isinstance(exc.original, NotImplementedError):
                raise
            results.append({"op": op, "raised": describe(exc.original, module)})
    return results


def check_checkpoint_hammer(module: Any, args: dict[str, Any]) -> dict[str, Any]:
    """Transition keys forever, logging each acknowledged transition; the parent SIGKILLs this process."""
    store_cls = need(module, "CheckpointStore")
    keys = [f"key-{i:04d}" for i in range(int(args["keys"]))]
    fd = os.open(args["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    with student_code():
        store = store_cls(args["state_dir"], args.get("batch_id", "batch-kill"))
    for _ in range(1_000_000):
        for i, key in enumerate(keys):
            with student_code():
                entry = entry_dict(store.transition(key, PROCESSING, doc_id=f"doc-{i:04d}"))
                if entry is None or entry["attempts"] is None:
                    entry = entry_dict(store.get(key))
            attempts = entry["attempts"] if entry else None
            os.write(fd, f"{key}\t{attempts}\n".encode())
    return {"finished": True}


def check_checkpoint_dump(module: Any, args: dict[str, Any]) -> dict[str, Any]:
    store_cls = need(module, "CheckpointStore")
    with student_code():
        store = store_cls(args["state_dir"], args.get("batch_id", "batch-kill"))
        entries = {str(k): entry_dict(v) for k, v in dict(store.entries()).items()}
        store.close()
    return {"entries": entries}


def check_keys(module: Any, args: dict[str, Any]) -> list[Any]:
    """The key of each described document (the parent compares them)."""
    make_key = need(module, "make_idempotency_key")
    keys = []
    for spec in args["docs"]:
        doc = Document(id=spec["id"], content=spec["content"], source=spec.get("source", "default"),
                       title=spec.get("title", ""), metadata=spec.get("metadata", {}))
        with student_code():
            key = make_key(doc, spec["layer"]) if "layer" in spec else make_key(doc)
        keys.append(key if isinstance(key, str) else {"not_a_str": type(key).__name__, "repr": repr(key)[:80]})
    return keys


def check_backoff(module: Any, args: dict[str, Any]) -> list[float]:
    """``backoff_delay(attempt, config[, rand])`` for each case."""
    delay = need(module, "backoff_delay")
    out = []
    for case in args["cases"]:
        config = BatchConfig(**case["config"])
        rand = case.get("rand")
        with student_code():
            value = delay(case["attempt"], config) if rand is None else delay(case["attempt"], config,
                                                                               lambda r=rand: r)
        out.append(float(value))
    return out


class KillingSink(SqliteSink):
    """The harness sink, plus a crash point the harness lacks: SIGKILL *before* the K-th put is written."""

    def __init__(self, *args: Any, kill_before_put_at: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kill_before_put_at = kill_before_put_at
        self.attempted = 0

    def put(self, key: str, doc: Document, chunks: Any, vectors: Any, *, mode: str = "full") -> int:
        self.attempted += 1
        if self.attempted == self.kill_before_put_at:
            if self.ledger is not None:
                self.ledger.emit("crash", kind="before_commit", at=self.attempted, doc_id=doc.id, ident=ident_of(doc))
            kill_self()
        return super().put(key, doc, chunks, vectors, mode=mode)


class GuardedService(SimulatedService):
    """The harness service; past ``guard`` attempts on one chunk it fails permanently, so endless retries end."""

    def __init__(self, *args: Any, guard: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.guard = guard
        self.guard_trips = 0

    async def embed(self, doc: Document, chunk: int, text: str) -> list[float]:
        if self.guard is not None:
            ident, _ = self._ident(doc)
            if self._attempts[(ident, chunk)] >= self.guard:
                self.guard_trips += 1
                raise PermanentServiceError("grader_guard", f"{doc.id} chunk {chunk}: more than {self.guard} calls")
        return await super().embed(doc, chunk, text)


def check_batch_pass(module: Any, args: dict[str, Any]) -> dict[str, Any]:
    """One pass of ``process_documents_batch`` with the harness's service, sink and ledger (the worker's job).

    Extra crash points: ``kill_before_put_at`` (SIGKILL before the K-th sink write)
    and the harness's own ``crash`` plan (``after_commit`` / ``during_call``).
    """
    entry = need(module, "process_documents_batch")
    run = Path(args["run_dir"])
    (run / "state").mkdir(parents=True, exist_ok=True)
    documents = json.loads(Path(args["input"]).read_text(encoding="utf-8"))["documents"]
    pass_no = int(args.get("pass_no", 1))
    ledger = Ledger(run / "ledger.jsonl", pass_no=pass_no)
    crash = CrashPlan(**args["crash"]) if args.get("crash") else CrashPlan()
    ledger.emit("pass_start", t0=args.get("t0"), batch_id=args["batch_id"], crash=crash.kind, at=crash.at)
    service = GuardedService(plan=FaultPlan.from_dict(args.get("plan", {})),
                             latency=LatencyModel(**args.get("latency", {})), ledger=ledger, crash=crash,
                             guard=args.get("guard"))
    sink = KillingSink(run / "sink.sqlite", ledger=ledger, pass_no=pass_no, crash=crash,
                       kill_before_put_at=int(args.get("kill_before_put_at", 0)))
    sleeps: list[float] = []
    kwargs: dict[str, Any] = {}
    if args.get("record_sleep"):
        async def recording_sleep(delay: float) -> None:
            sleeps.append(float(delay))
            await asyncio.sleep(0)

        kwargs["sleep"] = recording_sleep
    config = BatchConfig(**args.get("config", {}))
    try:
        with student_code():
            report = asyncio.run(entry(documents, batch_id=args["batch_id"], service=service, sink=sink,
                                       state_dir=run / "state", config=config, progress=LedgerProgress(ledger),
                                       **kwargs))
            report_dict = report.to_dict() if hasattr(report, "to_dict") else dict(report)
    except StudentCodeError as exc:
        ledger.emit("student_error", phase="run", error=f"{type(exc.original).__name__}: {exc.original}")
        raise
    finally:
        sink.close()
    ledger.emit("pass_end", report=report_dict, calls=service.calls, commits=sink.commits)
    return {"report": report_dict, "sleeps": sleeps, "calls": service.calls, "guard_trips": service.guard_trips,
            "max_inflight": service.max_inflight, "max_doc_inflight": service.max_doc_inflight}


CHECKS: dict[str, Callable[[Any, dict[str, Any]], Any]] = {
    "import": check_import,
    "checkpoint_script": check_checkpoint_script,
    "checkpoint_hammer": check_checkpoint_hammer,
    "checkpoint_dump": check_checkpoint_dump,
    "keys": check_keys,
    "backoff": check_backoff,
    "batch_pass": check_batch_pass,
}


def _student_frames(tb_text: str) -> bool:
    return bool(IMPL_PATH) and IMPL_PATH in tb_text


def _error(exc: BaseException) -> dict[str, Any]:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=12))
    return {"type": type(exc).__name__, "message": str(exc)[:2000], "traceback": tb[-4000:]}


def run(impl: str, check: str, args: dict[str, Any]) -> dict[str, Any]:
    global IMPL_PATH
    IMPL_PATH = str(Path(impl).resolve())
    verdict: dict[str, Any] = {"check": check}
    try:
        module = load_impl(impl)
    except BaseException as exc:  # noqa: BLE001 - anything at import is the student's error
        return {**verdict, "status": "import_error", "error": _error(exc)}
    try:
        verdict["data"] = CHECKS[check](module, args)
        verdict["status"] = "ok"
    except StudentCodeError as exc:
        original = exc.original
        status = "todo" if isinstance(original, NotImplementedError) else "student_error"
        verdict.update(status=status, error=_error(original))
    except BaseException as exc:  # noqa: BLE001
        err = _error(exc)
        # A failure deep inside the harness called by student code is still the student's.
        verdict.update(status="student_error" if _student_frames(err["traceback"]) else "grader_error", error=err)
    return verdict


def main(argv: list[str]) -> int:
    impl, check, args_path, verdict_path = argv[1:5]
    args = json.loads(Path(args_path).read_text(encoding="utf-8"))
    verdict = run(impl, check, args)
    text = json.dumps(verdict, ensure_ascii=False, default=str)
    tmp = Path(verdict_path + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, verdict_path)
    sys.stdout.flush()
    print("\n" + text[:2000], flush=True)
    sys.stderr.flush()
    # Leave at once: a thread the student started must not keep the probe (and the grader) waiting.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
