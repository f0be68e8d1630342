"""One pass of the processor over one leased shard: the child a fleet worker starts and kills.

``python -m batchlab.shardpass RUN_DIR --shard I --of N --owner W --token T --pass P``, or ``URL --folder DIR``
for a batch in a PostgreSQL store (:class:`batchlab.pgplace.StorePlace`: the same pass, its ledger, sink and
leases in the store, its spec and checkpoint in the worker's local folder). Where a pass writes is a
:class:`Place`; everything else is the same code for both stores.

It runs the implementation of ``RUN_DIR/spec.json`` in this process on the documents of shard ``I/N``
(``BatchConfig.shard``: the processor keeps a checkpoint of its own per shard and skips the others'
documents), with the run's service, the shared ledger (one ``os.write`` per event on ``O_APPEND``: several
passes append to it at once, each under its own pass number) and the run's sink, every put of which is
*fenced*: the lease (batch, shard, owner, token) is checked inside the put's own SQLite transaction
(:meth:`batchlab.leases.SqliteLeaseStore.fence`). A refused put is recorded (``fence_refusals``, and a
``stopped`` event naming the stale token) and this process leaves at once with :data:`EXIT_STALE`, whatever
the processor would have done with the exception: a worker that lost its shard must not go on.

``--serve`` loads everything once and runs a pass per lease line on stdin (:func:`serve_leases`: the worker's
pass runner, kept from shard to shard). ``--prepare`` only opens the processor's checkpoint store once (so its file exists, in WAL mode, before
several passes open it at once: SQLite refuses two processes switching a new file to WAL together).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import inspect
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, Protocol

from .leases import EXIT_STALE, FencedSink, Lease, SqliteLeaseStore, StaleLease
from .ledger import Ev, Ledger
from .lifeline import hold_parent_link
from .rundir import RunDir
from .sink import SqliteSink


@dataclass
class PassIO:
    """What one pass writes to, opened by its :class:`Place`: the ledger, the lease store (for ``refuse``) and the
    sink, its put fenced by the lease; the processor's checkpoint folder; the service's outage switch."""

    ledger: Any
    store: Any
    sink: Any
    state_dir: Path
    outage_switch: Path | None = None
    close: Callable[[], None] = lambda: None


class Place(Protocol):
    """Where a batch lives, as a pass sees it: a run directory (SQLite) or a PostgreSQL store (:mod:`batchlab.pgworker`).

    ``folder`` holds ``spec.json`` (the impl, the plan, the latency) and the passes' ``passN.stdout/err``.
    """

    folder: Path

    def open(self, spec: Any, lease: Lease, pass_no: int) -> PassIO: ...


@dataclass
class RunDirPlace:
    """A run directory: the shared file ledger, ``sink.sqlite`` with its lease table, the run's outage switch."""

    folder: Path

    def open(self, spec: Any, lease: Lease, pass_no: int) -> PassIO:
        run = RunDir(self.folder)
        ledger = Ledger(run.ledger, pass_no=pass_no)
        store = SqliteLeaseStore(run.sink)
        sink = SqliteSink(run.sink, ledger=ledger, pass_no=pass_no, durable=spec.durable,
                          guard=store.fence(lease, time.time))

        def close() -> None:
            sink.close()
            store.close()
            ledger.close()

        return PassIO(ledger, store, sink, run.state, run.outage_switch, close)


class InputCache:
    """The batch's input validated once per pass runner, not once per pass.

    Validating reads the whole file (UTF-8, syntax, sizes, the count): done by every pass, it was a whole extra
    read of the input before each shard's first call (a fleet runs 4 to 16 passes per batch). A runner keeps
    the header of the file it validated and opens a new stream on it for each pass while the file's size and
    modification time are the same (what :func:`batchlab.batchstream.open_checked`'s memo compares); a file that
    changed is validated again. ``memo``: the memo a fleet wrote when it validated the file before starting its
    workers (``RUN_DIR/input.checked.json``); a runner trusts it when it names this very file, and never writes it.
    """

    def __init__(self, memo: Path | None = None) -> None:
        self.memo = memo
        self._known: tuple[str, int, int] | None = None
        self._header: Any = None

    def open(self, path: str | Path) -> Any:
        """A :class:`batchlab.batchstream.BatchStream` on ``path``, validated if this file was not yet."""
        from .batchstream import BatchStream, open_batch

        st = os.stat(path)
        ident = (str(path), st.st_size, st.st_mtime_ns)
        if ident != self._known or self._header is None:
            self._header = self._from_memo(path, st) or open_batch(path).header
            self._known = ident
        return BatchStream(self._header)

    def _from_memo(self, path: str | Path, st: os.stat_result) -> Any:
        """The header the memo gives for this very file (path, size, modification time), else None."""
        import json

        from .batchfile import check_input_path
        from .batchstream import open_batch

        try:
            known = json.loads(self.memo.read_text(encoding="utf-8")) if self.memo is not None else None
        except (OSError, ValueError):
            return None
        ident = {"path": str(check_input_path(path)), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        if not (isinstance(known, dict) and {k: known.get(k) for k in ident} == ident and known.get("documents")):
            return None
        header = open_batch(path, validate=False, documents=int(known["documents"])).header
        if header.batch_id is None and isinstance(known.get("batch_id"), str):  # written after the documents
            header = dataclasses.replace(header, batch_id=known["batch_id"])
        return header


def _load(folder: Path) -> tuple[Any, Any]:
    from .runspec import read_spec
    from .worker import load_impl

    spec = read_spec(folder)
    return spec, load_impl(spec.impl)


def prepare(run_dir: Path) -> None:
    """Open the processor's checkpoint store once (see the module); a broken module is left to the passes."""
    try:
        spec, module = _load(run_dir)
        RunDir(run_dir).state.mkdir(exist_ok=True)
        module.CheckpointStore(RunDir(run_dir).state, spec.batch_id).close()
    except Exception:  # noqa: BLE001 - the passes report what is wrong with the module
        pass


def run(place: Place | Path, lease: Lease, pass_no: int, loaded: tuple[Any, Any] | None = None,
        inputs: InputCache | None = None) -> dict[str, Any]:
    """The pass: the processor over the shard's documents, every put fenced by ``lease``.

    ``place``: a :class:`Place` (a path is a run directory); ``loaded``: the spec and the module, already loaded by
    a pass runner (:func:`serve_leases`), and ``inputs`` its validated input.
    """
    from .service import SimulatedService

    place = RunDirPlace(place) if isinstance(place, Path) else place
    spec, module = loaded or _load(place.folder)
    entry = module.process_documents_batch
    if not inspect.iscoroutinefunction(entry):
        raise TypeError("the module has no `async def process_documents_batch(...)`")
    io = place.open(spec, lease, pass_no)
    io.ledger.emit(Ev.PASS_START, t0=time.time(), batch_id=spec.batch_id, impl=str(spec.impl), crash="none", at=0,
                   shard=lease.spec, owner=lease.owner, token=lease.token)
    service = SimulatedService(plan=spec.plan, latency=spec.latency, ledger=io.ledger,
                               outage_switch=io.outage_switch)

    def refused(key: str) -> NoReturn:
        io.store.refuse(lease, key, now=time.time())
        io.ledger.emit(Ev.STOPPED, signal="stale_lease", left_in_flight=[], in_flight=0, commits=io.sink.commits,
                       calls=service.calls, grace_s=0.0, shard=lease.spec, owner=lease.owner, token=lease.token,
                       refused_key=key)
        print(f"shardpass {os.getpid()}: {StaleLease(lease, key)}; leaving", flush=True)
        os._exit(EXIT_STALE)

    io.state_dir.mkdir(exist_ok=True)
    try:
        report = asyncio.run(entry((inputs or InputCache()).open(spec.input), batch_id=spec.batch_id, service=service,
                                   sink=FencedSink(io.sink, refused), state_dir=io.state_dir,
                                   config=dataclasses.replace(spec.config, shard=lease.spec)))
        report_dict = dict(report.to_dict()) if hasattr(report, "to_dict") else dict(report)
        io.ledger.emit(Ev.PASS_END, report=report_dict, calls=service.calls, commits=io.sink.commits)
    finally:
        io.close()
    return report_dict


def serve_leases(place: Place) -> int:
    """A pass runner: load everything once, then run one pass per lease line on stdin; EOF: leave.

    The worker starts it before it claims, so a claimed shard starts at once instead of after an interpreter's
    start and the imports (a second or more on a loaded 2-core machine), and keeps it for the next shard. Each
    lease line (JSON) names its pass (``pass``); stdout and stderr go to its ``passN.*`` files in the place's
    folder, and ``done`` on the original stdout tells the worker the pass ended well. A pass that raises ends the
    process (the worker sees end-of-file and its exit code); a refused put ends it with :data:`EXIT_STALE`.
    """
    import json

    ctl = os.fdopen(os.dup(1), "w")
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)  # nothing but ``done`` reaches the worker's pipe
    os.close(quiet)
    from .worker import INPUT_CHECKED

    inputs = InputCache(place.folder / INPUT_CHECKED)
    try:
        spec_module = _load(place.folder)
        inputs.open(spec_module[0].input)  # validated now, before the first lease: each pass then only reads it
        loaded: tuple[Any, Any] | None = spec_module
    except BaseException:  # noqa: BLE001 - reported by the first pass, which loads again and raises
        loaded = None
    for line in sys.stdin:
        if not line.strip():
            break
        got = json.loads(line)
        files = RunDir(place.folder)
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, path in ((1, files.stdout(got["pass"])), (2, files.stderr(got["pass"]))):
            target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(target, fd)
            os.close(target)
        lease = Lease(got["batch_id"], got["shard"], got["of"], got["owner"], got["token"], 0.0)
        run(place, lease, got["pass"], loaded, inputs)
        sys.stdout.flush()
        sys.stderr.flush()
        ctl.write("done\n")
        ctl.flush()
    return 0


def place_of(target: str, folder: Path | None) -> Place:
    """A run directory, or (``target`` a PostgreSQL URL) the store with ``folder`` as the worker's local folder."""
    if target.startswith(("postgresql://", "postgres://")):  # :func:`batchlab.pgstore.is_store_url`, psycopg unloaded
        from .pgplace import StorePlace

        if folder is None:
            raise SystemExit("a pass on a PostgreSQL store needs --folder")
        return StorePlace(target, folder)
    return RunDirPlace(Path(target))


def main(argv: list[str] | None = None) -> int:
    hold_parent_link()  # first: this pass dies with the worker that holds its lease
    parser = argparse.ArgumentParser(prog="python -m batchlab.shardpass")
    parser.add_argument("target", help="a run directory, or a PostgreSQL store's URL (then --folder)")
    parser.add_argument("--folder", type=Path, default=None, help="with a URL: the worker's local folder")
    parser.add_argument("--prepare", action="store_true")
    parser.add_argument("--serve", action="store_true", help="load, then run a pass per lease line on stdin")
    parser.add_argument("--batch-id", default="")
    parser.add_argument("--shard", type=int, default=0)
    parser.add_argument("--of", type=int, default=1)
    parser.add_argument("--owner", default="")
    parser.add_argument("--token", type=int, default=0)
    parser.add_argument("--pass", dest="pass_no", type=int, default=1)
    args = parser.parse_args(argv)
    if args.prepare:
        prepare(Path(args.target))
        return 0
    place = place_of(args.target, args.folder)
    if args.serve:
        return serve_leases(place)
    lease = Lease(args.batch_id, args.shard, args.of, args.owner, args.token, 0.0)
    run(place, lease, args.pass_no)
    return 0


if __name__ == "__main__":
    sys.exit(main())
