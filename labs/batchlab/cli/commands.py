"""The ``batchlab`` command's verbs: each a thin call of a keyword-only function of the kit."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import EXIT_FAILED, EXIT_OK, UsageError, strict_json
from ..rundir import RunDir
from .stopsignals import StopSignals


def describe_pass(result: Any) -> str:
    """One line for a pass that ended: its outcome, its time, and the planned SIGKILL if it was one."""
    text = f"pass {result.pass_no}: {result.outcome} after {result.duration_s:.2f} s"
    if result.sigkilled:
        text += f" (SIGKILL, crash plan: {result.crash.kind}" + (f" at {result.crash.at})" if result.crash.at else ")")
    return text


def _check_run_dir_input(run: Path, input_path: Path) -> None:
    """A run directory keeps the input it was started with; an unreadable spec is said so, not a traceback."""
    spec_file = RunDir(run).spec
    if not (spec_file.exists() or spec_file.is_symlink()):
        return
    try:
        old = json.loads(spec_file.read_text(encoding="utf-8"))
        old_input = old["input"]
        if not isinstance(old_input, str):
            raise TypeError("input is not a string")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{spec_file} cannot be read: {type(exc).__name__}: {exc}", code="run_dir_corrupt",
                         details={"run_dir": str(run), "spec": str(spec_file)},
                         hints=["Choose a new --run-dir; keep this one for inspection."]) from None
    if Path(old_input).resolve() != Path(input_path).resolve():
        raise UsageError(f"{run} belongs to another input ({old_input})", code="run_dir_mismatch",
                         details={"run_dir": str(run), "input": old_input},
                         hints=["Resume with the same --input, or choose a new --run-dir."])


def resume_command(input_path: Path, run_dir: Path) -> str:
    import shlex

    return f"batchlab run --input {shlex.quote(str(input_path))} --run-dir {shlex.quote(str(run_dir))}"


def run_spec(args: argparse.Namespace, run: Path, header_batch_id: str | None) -> Any:
    """The :class:`batchlab.runspec.RunSpec` of ``batchlab run``'s options (one pass or ``--workers N``)."""
    from ..contract import BatchConfig
    from ..faults import FaultPlan
    from ..paths import default_demo_impl
    from ..runner import RunSpec
    from ..service import LatencyModel

    return RunSpec(impl=Path(args.impl or default_demo_impl()), input=Path(args.input), run_dir=run,
                   batch_id=args.batch_id or header_batch_id or "batch-001",
                   config=BatchConfig(concurrency=args.concurrency,
                                      breaker_failures=0 if args.no_breaker else BatchConfig.breaker_failures,
                                      call_timeout=args.call_timeout),
                   plan=FaultPlan(seed=args.seed, transient_rate=args.fault_rate, stuck_rate=args.stuck_rate,
                                  permanent_rate=args.permanent_rate,
                                  outages=tuple(args.outage)),
                   latency=LatencyModel(median_ms=args.latency_ms), timeout_s=args.timeout,
                   lock_wait_s=args.wait)


def cmd_run(args: argparse.Namespace) -> int:
    """One pass in a run directory: the first creates it, the next ones resume it.

    The run directory is this command's (then its worker's) alone: a second ``run``
    on it waits ``--wait`` seconds and refuses with ``run_dir_busy``. Ctrl-C or
    SIGTERM stops the worker (no new documents, in-flight ones get
    ``stopgate.STOP_GRACE_S`` to commit), prints how far it got and the resume
    command, and exits 130 or 143; SIGKILL of this command kills the worker too.
    ``--workers N`` (N > 1): the batch is shared by N lease-holding workers (:mod:`batchlab.cli.fleet_cmds`).
    """
    if getattr(args, "store", None):
        from .fleet_cmds import cmd_run_store

        return cmd_run_store(args)
    if getattr(args, "workers", 1) > 1:
        from .fleet_cmds import cmd_run_workers

        return cmd_run_workers(args)
    from ..batchstream import open_checked
    from ..faults import CrashPlan
    from ..ledger_views import last_pass_no
    from ..metrics import format_table, metrics_for_run
    from ..runlock import RunDirLock
    from ..runner import prepare, run_pass
    from ..worker import INPUT_CHECKED, WorkerExit

    # Validated as a stream (one document in memory; no cap on the count): the worker reads it the same way. A run
    # directory whose worker validated this very file (same path, size, time: its memo) is not read again, so a
    # resume or a no-op rerun of a large batch starts at once.
    run = Path(args.run_dir)
    memo = run / INPUT_CHECKED
    header = open_checked(args.input, memo if memo.is_file() else None).header
    _check_run_dir_input(run, args.input)
    with RunDirLock(run, role="batchlab run").acquire(args.wait) as lock:  # refuses a busy dir, touching nothing
        # from the ledger's end: a finished million-document run's ledger is about a GB
        pass_no = 1 + last_pass_no(RunDir(run).ledger)
        spec = run_spec(args, run, header.batch_id)
        prepare(spec)
        crash = CrashPlan(kind=args.crash, at=args.at or (1 if args.crash in ("during_call", "after_commit") else 0))
        with StopSignals() as stop:
            result = run_pass(spec, pass_no, crash, lock=lock, stop=stop)
    print(describe_pass(result))
    if result.stdout.strip() and result.returncode == WorkerExit.INPUT:
        print(result.stdout)
    if result.returncode not in (0, None, 5) and not result.sigkilled:
        print(result.stderr[-3000:], file=sys.stderr)
    if args.no_metrics:
        print(f"metrics: batchlab metrics {run}")
    else:
        metrics = metrics_for_run(run)
        print(format_table(metrics))
    if result.stopped_by:
        left = "" if args.no_metrics else (f": {metrics.completed} of {metrics.unique} documents committed, "
                                           f"{metrics.unique - metrics.completed} left")
        print(f"\nstopped by {result.stopped_by}{left} (in-flight ones are redone on resume).")
        print(f"resume with: {resume_command(args.input, run)}")
        return stop.exit_code
    return EXIT_OK if result.returncode == 0 or result.sigkilled else EXIT_FAILED


def cmd_metrics(args: argparse.Namespace) -> int:
    from ..metrics import format_table, metrics_for_run

    if getattr(args, "store", None):
        from .store_cmds import cmd_metrics_store

        return cmd_metrics_store(args)
    if args.run_dir is None:
        raise UsageError("give a run directory (or --store URL --batch-id ID)", code="usage_error",
                         hints=["batchlab metrics runs/demo"])
    run = Path(args.run_dir)
    if not RunDir(run).spec.exists():
        raise UsageError(f"{run} is not a run directory", code="not_a_run", details={"run_dir": str(run)},
                         hints=["A run directory has spec.json and ledger.jsonl (from `batchlab demo` or `run`)."])
    metrics = metrics_for_run(run)  # whatever the directory holds: the figures, or a KitError
    print(strict_json(metrics.to_dict(), ensure_ascii=False, indent=2, default=str) if args.json
          else format_table(metrics))
    return EXIT_OK


def cmd_backfill(args: argparse.Namespace) -> int:
    """后续标记待补: one more pass that redoes the run's degraded documents in full (:mod:`batchlab.backfill`).

    Nothing degraded is not an error (0 upgraded, no pass); a run directory that is not
    one, a running batch (``run_dir_busy``) or a service still down give the unified error.
    """
    from ..backfill import run_backfill
    from ..metrics import format_table

    with StopSignals() as stop:
        result = run_backfill(args.run_dir, wait_s=args.wait, stop=stop)
    if args.json:
        print(strict_json(result.to_dict(), ensure_ascii=False, indent=2))
    else:
        if result.pass_result is not None:
            print(describe_pass(result.pass_result))
        print(result.summary())
        if result.metrics is not None and result.ran:
            print()
            print(format_table(result.metrics))
    if result.pass_result is not None and result.pass_result.stopped_by:
        return stop.exit_code
    return EXIT_OK if result.pass_result is None or result.pass_result.returncode == 0 else EXIT_FAILED


def cmd_outage(args: argparse.Namespace) -> int:
    """The live switch of a run's service (``RunDir.outage_switch``): the running worker obeys it at its next call."""
    run = RunDir(Path(args.run_dir))
    if not run.spec.is_file():
        raise UsageError(f"{args.run_dir} is not a run directory (no {run.spec.name})", code="run_dir_not_found",
                         details={"run_dir": str(args.run_dir)}, hints=["Give the --run-dir of `batchlab run`."])
    if args.state == "on":
        run.outage_switch.touch()
    elif args.state == "off":
        run.outage_switch.unlink(missing_ok=True)
    down = run.outage_switch.exists()
    print(f"{run.path}: the service is {'unreachable (outage on)' if down else 'reachable (outage off)'}")
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    """The batch's counts, streamed (``open_batch`` validates it, ``count_input`` counts it): no cap on N."""
    from ..batchstream import open_batch
    from ..inventory import count_input, spills

    stream = open_batch(args.input)
    counts = count_input(stream, on_disk=spills(stream.header.documents))
    summary = {"input": str(args.input), "batch_id": stream.header.batch_id, "documents": counts.total,
               "valid": counts.valid, "unique": counts.unique,
               "invalid": dict(counts.reasons), "sources": dict(counts.sources)}
    print(strict_json(summary, ensure_ascii=False, indent=2))
    return EXIT_OK


def cmd_make_input(args: argparse.Namespace) -> int:
    """Write a synthetic batch, streamed: memory does not grow with ``--docs`` (``examples.iter_documents``)."""
    from ..batchstream import batch_format
    from ..examples import iter_documents, write_documents

    if args.min_bytes > args.max_bytes:
        raise UsageError("--min-bytes is larger than --max-bytes", code="usage_error")
    fmt = args.format or (batch_format(args.out) if args.out else "json")
    out = Path(args.out or f"examples/input_{args.docs}.{fmt}")
    if out.exists() and not args.force:
        raise UsageError(f"{out} exists", code="output_exists", details={"out": str(out)},
                         hints=["Pass --force to overwrite it, or choose another --out."])
    docs = iter_documents(args.docs, seed=args.seed, min_bytes=args.min_bytes, max_bytes=args.max_bytes)
    written = write_documents(out, docs, batch_id=args.batch_id, format=fmt)
    print(json.dumps({"out": str(out), "documents": written, "seed": args.seed, "format": fmt}))
    return EXIT_OK


def cmd_release(args: argparse.Namespace) -> int:
    from ..paths import kit_root
    from ..teach.release import release

    result = release(root=kit_root(), check=args.check, out=Path(args.out) if args.out else None,
                     force=args.force)
    if result.out_dir:
        print(f"student distribution: {result.out_dir}")
        print("  next: cd into it, `git init && git add -A && git commit -m 'Lesson 15 lab'`, and publish it "
              "as the class repository (its README.md is the students' guide)")
    elif args.check:
        print(f"{result.student} is up to date" + (f" ({result.note})" if result.note else ""))
    else:
        print(f"{'wrote' if result.changed else 'unchanged'}: {result.student}")
        if result.backup:
            print(f"the earlier working copy is kept at {result.backup}")
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    from ..teach.bench import format_bench, run_bench

    if args.scale:
        from ..teach.bench_scale import DEFAULT_SIZES, MILLION, format_scale, run_scale

        sizes = args.sizes or [*DEFAULT_SIZES, *([MILLION] if args.million else [])]
        scaled = run_scale(sizes, workdir=Path(args.keep) if args.keep else None, one_pass=args.one_pass,
                           say=lambda line: print(line, file=sys.stderr, flush=True))
        print(json.dumps(scaled, indent=2) if args.json else format_scale(scaled))
        return EXIT_OK
    result = run_bench(quick=args.quick, impl=args.impl, repeat=args.repeat)
    print(json.dumps(result, indent=2) if args.json else format_bench(result))
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    """``batchlab serve``: FastAPI and uvicorn are imported here, never by ``batchlab --help``."""
    from ..serve.server import cmd_serve as run_server

    return run_server(args)
