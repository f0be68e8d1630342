"""The probe: runs one named check against an implementation file, inside a sandboxed child process.

``python grader/probe.py IMPL CHECK ARGS_JSON VERDICT_JSON``

Student code never runs in the grader's own process (docs/design.md, principle 13): the
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
import gc
import json
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from batchlab.contract import PROCESSING, BatchConfig
from batchlab.documents import Document, ident_of, parse_document
from batchlab.faults import CrashPlan, FaultPlan, kill_self
from batchlab.ledger import Ledger
from batchlab.pipeline import output_matches
from batchlab.rundir import RunDir
from batchlab.service import LatencyModel, PermanentServiceError, SimulatedService, TransientServiceError
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


def check_checkpoint_namespaces(module: Any, args: dict[str, Any]) -> dict[str, Any]:
    """Stores of several ``(batch_id, shard)`` in one state_dir write the same keys, each to other states.

    Store n moves ``shared-0``..``shared-2`` to a state of its own (and ``only-n`` to done);
    every store's ``entries()`` is read with all stores open, and again after closing
    and reopening them all. The parent compares each with what that store wrote.
    """
    store_cls = need(module, "CheckpointStore")
    finals = ["done", "degraded", "failed", "processing"]
    own: dict[str, dict[str, str]] = {}
    labels = []
    stores = []
    with student_code():
        for batch_id, shard in args["stores"]:
            label = f"{batch_id}" + (f" shard {shard}" if shard else "")
            labels.append(label)
            stores.append(store_cls(args["state_dir"], batch_id, shard=shard) if shard
                          else store_cls(args["state_dir"], batch_id))
        for n, store in enumerate(stores):
            mine: dict[str, str] = {}
            for k in range(3):
                key, final = f"shared-{k}", finals[(n + k) % len(finals)]
                store.transition(key, PROCESSING, doc_id=f"doc-{k}")
                if final != PROCESSING:
                    store.transition(key, final, error=None if final == "done" else "boom")
                mine[key] = final
            store.transition(f"only-{n}", PROCESSING, doc_id=f"only-{n}")
            store.transition(f"only-{n}", "done")
            mine[f"only-{n}"] = "done"
            own[labels[n]] = mine

        def snapshot(opened: list[Any]) -> dict[str, dict[str, Any]]:
            return {labels[n]: {str(k): entry_dict(v) for k, v in dict(s.entries()).items()}
                    for n, s in enumerate(opened)}

        before = snapshot(stores)
        for store in stores:
            store.close()
        reopened = [store_cls(args["state_dir"], b, shard=sh) if sh else store_cls(args["state_dir"], b)
                    for b, sh in args["stores"]]
        after = snapshot(reopened)
        for store in reopened:
            store.close()
    return {"own": own, "before reopen": before, "after reopen": after}


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


class WriteCounter:
    """Bytes this process has passed to write(2) so far (``wchar`` of ``/proc/self/io``); None off Linux."""

    def __init__(self) -> None:
        try:
            self.fd: int | None = os.open("/proc/self/io", os.O_RDONLY)
            self.read()
        except (OSError, ValueError):
            self.fd = None

    def read(self) -> int | None:
        if self.fd is None:
            return None
        for line in os.pread(self.fd, 4096, 0).decode().splitlines():
            if line.startswith("wchar:"):
                return int(line.split()[1])
        raise ValueError("no wchar in /proc/self/io")


def check_checkpoint_cost(module: Any, args: dict[str, Any]) -> dict[str, Any]:  # noqa: C901 (issue 15 item 3)
    """The cost of one transition in a small checkpoint against a growing one (the checkpoint hot spot).

    A *small* store gets ``small`` keys; a *big* one (another state directory)
    grows towards ``levels[-1]`` keys, within ``budget_s`` seconds of filling. Each
    transition's time and bytes written (``wchar``, deterministic whatever the load)
    are recorded. A *measurement* times ``samples`` transitions (``processing ->
    processing`` on existing keys: the sizes stay put) on the two stores in
    alternation, so that a loaded machine slows both alike (at least 21 of each when
    they take more than ``measure_s``), and keeps the medians of time and bytes and
    their ratios. One is made at each level, and as soon as the median bytes of the
    last 50 fill transitions pass ``bytes_ratio`` times the small store's (a store
    that rewrites everything would otherwise take minutes to fill). Filling stops
    once a measurement passes ``time_ratio`` or ``bytes_ratio``.
    """
    store_cls = need(module, "CheckpointStore")
    small_n, samples = int(args["small"]), int(args["samples"])
    levels, budget_s = [int(n) for n in args["levels"]], float(args["budget_s"])
    time_limit, bytes_limit = float(args["time_ratio"]), float(args["bytes_ratio"])
    measure_s = float(args.get("measure_s", 3.0))
    root = Path(args["work"])
    writes = WriteCounter()

    def key(i: int) -> str:
        return f"cost-{i:06d}"

    def timed(store: Any, k: str, **kwargs: Any) -> tuple[float, int | None]:
        w0 = writes.read()
        t = time.perf_counter()
        store.transition(k, PROCESSING, **kwargs)
        elapsed = time.perf_counter() - t
        w1 = writes.read()
        return elapsed, (None if w0 is None or w1 is None else w1 - w0)

    def median(values: list[Any]) -> Any:
        known = [v for v in values if v is not None]
        return statistics.median(known) if known else None

    def ratio(big: float | None, small: float | None) -> float | None:
        if big is None or small is None:
            return None
        if small <= 0:
            return 1.0 if big <= 0 else float("inf")
        return big / small

    with student_code():
        small = store_cls(str(root / "small-state"), "batch-cost-small")
        big = store_cls(str(root / "big-state"), "batch-cost-big")
        for i in range(small_n):
            small.transition(key(i), PROCESSING, doc_id=f"doc-{i}")

    measured: list[dict[str, Any]] = []

    def measure(size: int, why: str) -> dict[str, Any]:
        gc.collect()
        gc.disable()
        try:
            small_t: list[tuple[float, int | None]] = []
            big_t: list[tuple[float, int | None]] = []
            m0 = time.perf_counter()
            with student_code():
                for n in range(samples):
                    small_t.append(timed(small, key((n * 7919) % small_n)))
                    big_t.append(timed(big, key((n * 7919) % size)))
                    if n >= 20 and time.perf_counter() - m0 > measure_s:
                        break  # a slow store: 21 pairs or more are enough for a median
        finally:
            gc.enable()
        row = {"size": size, "why": why, "samples": len(small_t),
               "small_ms": median([t for t, _ in small_t]) * 1e3, "big_ms": median([t for t, _ in big_t]) * 1e3,
               "small_bytes": median([b for _, b in small_t]), "big_bytes": median([b for _, b in big_t])}
        row["time_ratio"] = ratio(row["big_ms"], row["small_ms"])
        row["bytes_ratio"] = ratio(row["big_bytes"], row["small_bytes"])
        measured.append(row)
        return row

    def too_costly(row: dict[str, Any]) -> bool:
        return row["time_ratio"] > time_limit or (row["bytes_ratio"] is not None and row["bytes_ratio"] > bytes_limit)

    with student_code():  # the small store's bytes per transition, for the fill's early measurements
        baseline = median([timed(small, key(n % small_n))[1] for n in range(21)])
    size, fill_s, stopped = 0, 0.0, "done"
    for level in levels:
        while size < level and stopped == "done":
            if fill_s >= budget_s:
                stopped = "budget"
                break
            batch_bytes = []
            t0 = time.perf_counter()
            with student_code():
                for i in range(size, min(level, size + 50)):
                    batch_bytes.append(timed(big, key(i), doc_id=f"doc-{i}")[1])
            fill_s += time.perf_counter() - t0
            size = min(level, size + 50)
            grown = ratio(median(batch_bytes), baseline)
            if size < level and grown is not None and grown > bytes_limit and too_costly(measure(size, "bytes grew")):
                stopped = "ratio"
        if stopped != "done":
            break
        if too_costly(measure(size, "level")):
            stopped = "ratio"
            break
    if stopped == "budget":
        measure(size, "budget")
    with student_code():
        small.close()
        big.close()
    return {"small": small_n, "levels": measured, "stopped": stopped, "fill_s": fill_s,
            "bytes_counted": writes.fd is not None}


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


def check_retrying(module: Any, args: dict[str, Any]) -> list[dict[str, Any]]:
    """Drive ``make_retrying(config, sleep=, before_sleep=)`` over calls that fail as each case says.

    A case's call fails ``failures`` times with a transient (timeout) or permanent
    (parse error) error, then succeeds; past ``guard`` calls it raises a guard error
    that no retry policy should retry, so that unlimited retries end. Each case gets
    a fresh retrying object. Recorded: calls, the waits passed to ``sleep``, how
    often ``before_sleep`` ran, and what came out.
    """
    make_retrying = need(module, "make_retrying")
    out = []
    for case in args["cases"]:
        config = BatchConfig(**case["config"])
        guard = int(case.get("guard", 12))
        calls, sleeps, before = 0, [], 0
        raised_by_call: list[BaseException] = []

        async def call() -> str:
            nonlocal calls
            calls += 1
            if calls > guard:
                exc: BaseException = PermanentServiceError("grader_guard", f"more than {guard} calls")
            elif calls <= case["failures"]:
                exc = (TransientServiceError("timeout", f"call {calls} timed out") if case["error"] == "transient"
                       else PermanentServiceError("parse_error", f"call {calls}: cannot parse"))
            else:
                return "ok"
            raised_by_call.append(exc)
            raise exc

        async def recording_sleep(delay: float) -> None:
            sleeps.append(float(delay))

        def count_before_sleep(state: Any) -> None:
            nonlocal before
            before += 1

        async def drive() -> str:
            with student_code():
                retrying = make_retrying(config, sleep=recording_sleep, before_sleep=count_before_sleep)
            try:
                async for attempt in retrying:
                    with attempt:
                        result = await call()
                return result
            except BaseException as exc:  # noqa: BLE001
                if any(exc is e for e in raised_by_call) or type(exc).__name__ == "RetryError":
                    raise
                raise StudentCodeError(exc) from exc

        outcome: dict[str, Any]
        try:
            outcome = {"result": asyncio.run(drive())}
        except StudentCodeError:
            raise
        except (TransientServiceError, PermanentServiceError) as exc:
            outcome = {"raised": type(exc).__name__, "kind": exc.kind}
        except BaseException as exc:  # noqa: BLE001 - tenacity's RetryError (no reraise=True)
            outcome = {"raised": type(exc).__name__, "kind": None}
        out.append({**outcome, "calls": calls, "sleeps": sleeps, "before_sleep": before})
    return out


def _result_fields(result: Any) -> dict[str, Any]:
    def field(name: str) -> Any:
        return result.get(name) if isinstance(result, dict) else getattr(result, name, None)

    return {name: field(name) for name in ("mode", "chunks", "vectors", "error", "retries")}


def check_documents(module: Any, args: dict[str, Any]) -> dict[str, Any]:
    """``process_document`` on each document, one after the other or through ``run_bounded``.

    The harness's service records every call in a ledger (``run_dir/ledger.jsonl``:
    in-flight counts, chunk order, attempts); the parent reads it. ``sleep`` is a
    recording fake, so retries wait for nothing. Each result is summarized (mode,
    error, retries, whether its output is the pipeline's for that mode).
    """
    process_document = need(module, "process_document")
    run = Path(args["run_dir"])
    run.mkdir(parents=True, exist_ok=True)
    docs = [parse_document(raw) for raw in args["documents"]]
    ledger = Ledger(RunDir(run).ledger, pass_no=1)
    service = GuardedService(plan=FaultPlan.from_dict(args.get("plan", {})),
                             latency=LatencyModel(**args.get("latency", {})), ledger=ledger, guard=args.get("guard"))
    config = BatchConfig(**args.get("config", {}))
    sleeps: list[float] = []
    on_calls: dict[str, int] = {}
    results: dict[str, dict[str, Any]] = {}

    async def recording_sleep(delay: float) -> None:
        sleeps.append(float(delay))
        await asyncio.sleep(0)

    async def one(doc: Document) -> None:
        def on_call() -> None:
            on_calls[doc.id] = on_calls.get(doc.id, 0) + 1

        result = await process_document(doc, service=service, config=config, sleep=recording_sleep, on_call=on_call)
        fields = _result_fields(result)
        chunks, vectors = fields.pop("chunks"), fields.pop("vectors")
        try:
            matches = output_matches(doc, str(fields["mode"]), list(chunks or []), list(vectors or []))
        except Exception:  # noqa: BLE001 - a malformed result simply does not match
            matches = False
        results[doc.id] = {**{k: (v if isinstance(v, (int, float, str, type(None))) else repr(v)[:80])
                              for k, v in fields.items()}, "matches": matches}

    async def main() -> None:
        if args.get("driver") == "bounded":
            run_bounded = need(module, "run_bounded")
            await run_bounded(docs, one, limit=config.concurrency)
        else:
            for doc in docs:
                await one(doc)

    with student_code():
        asyncio.run(main())
    return {"results": results, "sleeps": sleeps, "calls": service.calls, "guard_trips": service.guard_trips,
            "on_calls": on_calls, "max_inflight": service.max_inflight, "max_doc_inflight": service.max_doc_inflight}


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
    RunDir(run).state.mkdir(parents=True, exist_ok=True)
    documents = json.loads(Path(args["input"]).read_text(encoding="utf-8"))["documents"]
    pass_no = int(args.get("pass_no", 1))
    ledger = Ledger(RunDir(run).ledger, pass_no=pass_no)
    crash = CrashPlan(**args["crash"]) if args.get("crash") else CrashPlan()
    ledger.emit("pass_start", t0=args.get("t0"), batch_id=args["batch_id"], crash=crash.kind, at=crash.at)
    service = GuardedService(plan=FaultPlan.from_dict(args.get("plan", {})),
                             latency=LatencyModel(**args.get("latency", {})), ledger=ledger, crash=crash,
                             guard=args.get("guard"))
    sink = KillingSink(RunDir(run).sink, ledger=ledger, pass_no=pass_no, crash=crash,
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
                                       state_dir=RunDir(run).state, config=config, progress=LedgerProgress(ledger),
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
    "checkpoint_namespaces": check_checkpoint_namespaces,
    "checkpoint_hammer": check_checkpoint_hammer,
    "checkpoint_dump": check_checkpoint_dump,
    "checkpoint_cost": check_checkpoint_cost,
    "keys": check_keys,
    "backoff": check_backoff,
    "retrying": check_retrying,
    "documents": check_documents,
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
