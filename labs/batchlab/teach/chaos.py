"""``batchlab chaos RUN_DIR``: a batch under many random SIGKILLs, checked after every one.

A teaching tool as much as a test. It runs ``batchlab run`` on one run directory
again and again and, at a random moment after each pass is at work, SIGKILLs the
command *and* its worker (``kill -9`` of both, as a power cut or an OOM killer
would). After every kill it waits until both are gone and the run directory's
lock is free, then runs SQLite's ``PRAGMA integrity_check`` on every database of
the run (the sink and the processor's own checkpoint). After the last kill one
pass runs to its end; then it prints:

* kills, and the commits each pass made before its kill;
* integrity checks passed and failed;
* duplicates (executions of a document beyond its first, from the sink's own
  ``puts`` table) and lost documents (valid documents without a correct output);
* the final metrics against the lesson's thresholds;
* the **granularity effect** when it sees it: under frequent kills, the largest
  documents are started again and again and never finish, because each resume
  restarts a document from chunk 0 (resume granularity is the document). The
  tool names them, how many times each was restarted and how far it got.

``python -m batchlab chaos`` is the same command. Every process it starts is
SIGKILLed on the way out (``finally``), whatever happens.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EXIT_FAILED, EXIT_OK, KitError, UsageError
from ..host import environ_snapshot, pid_alive
from ..ledger import append_event, read_events
from ..rundir import RunDir
from ..runlock import lock_is_held
from ..runner import WORK_EVENTS, LedgerTail

#: Waiting for a pass to be at work, or for a killed process to be gone, never takes longer than this.
STEP_TIMEOUT_S = 120.0
#: A document started in at least this many killed passes without a commit shows the granularity effect.
RESTARTS_FOR_GRANULARITY = 3
SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass
class Kill:
    """One SIGKILL of the command and its worker."""

    n: int
    pass_no: int
    delay_s: float
    commits: int
    cli_pid: int
    worker_pid: int
    integrity: dict[str, str]

    @property
    def integrity_ok(self) -> bool:
        return all(v == "ok" for v in self.integrity.values())


@dataclass
class ChaosResult:
    run_dir: Path
    input: Path
    kills: list[Kill] = field(default_factory=list)
    window_s: tuple[float, float] = (0.05, 1.5)
    seed: int = 15
    finished_early: bool = False
    stopped_early: str = ""  #: why the kills stopped before their number (a pass that cannot run)
    final_outcome: str = ""
    final_integrity: dict[str, str] = field(default_factory=dict)
    metrics: Any = None
    granularity: dict[str, Any] | None = None
    elapsed_s: float = 0.0

    @property
    def integrity_failures(self) -> int:
        return sum(not k.integrity_ok for k in self.kills) + (0 if all(
            v == "ok" for v in self.final_integrity.values()) else 1)

    @property
    def duplicates(self) -> int:
        return sum(d.executions - 1 for d in self.metrics.duplicates) if self.metrics is not None else -1

    @property
    def lost(self) -> list[str]:
        return list(self.metrics.missing) if self.metrics is not None else []

    @property
    def ok(self) -> bool:
        return (self.metrics is not None and self.duplicates == 0 and not self.lost and self.integrity_failures == 0
                and not self.stopped_early)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir), "input": str(self.input), "window_s": list(self.window_s),
            "seed": self.seed, "kills": len(self.kills), "finished_early": self.finished_early,
            "stopped_early": self.stopped_early,
            "commits_between_kills": [k.commits for k in self.kills],
            "integrity_checks": len(self.kills) + 1, "integrity_failures": self.integrity_failures,
            "final_outcome": self.final_outcome, "duplicates": self.duplicates, "lost": len(self.lost),
            "lost_ids": self.lost[:50], "metrics": self.metrics.summary() if self.metrics is not None else None,
            "meets_thresholds": self.metrics.meets_thresholds() if self.metrics is not None else False,
            "granularity": self.granularity, "elapsed_s": round(self.elapsed_s, 1), "ok": self.ok,
            "kill_log": [asdict(k) for k in self.kills],
        }

    def lines(self) -> list[str]:
        from ..metrics import format_table

        commits = [k.commits for k in self.kills]
        out = [f"kills: {len(self.kills)} (`batchlab run` and its worker, SIGKILL, every "
               f"{self.window_s[0]:g}-{self.window_s[1]:g} s after the pass was at work; seed {self.seed})"]
        if self.finished_early:
            out.append("the batch finished before the last planned kill: nothing was left to interrupt")
        if self.stopped_early:
            out.append(self.stopped_early)
        if commits:
            out.append(f"commits between kills: total {sum(commits)}, min {min(commits)}, median "
                       f"{statistics.median(commits):g}, max {max(commits)}; last ten: "
                       f"{' '.join(map(str, commits[-10:]))}")
        checks = len(self.kills) + 1
        out.append(f"integrity: {checks - self.integrity_failures} of {checks} checks ok "
                   f"({', '.join(sorted(self.final_integrity)) or 'no database yet'})")
        out.append(f"final pass: {self.final_outcome}")
        if self.metrics is not None:
            m = self.metrics
            out.append(f"duplicates: {self.duplicates} executions beyond the first "
                       f"({len(m.duplicates)} documents) of {m.unique} unique documents")
            out.append(f"lost: {len(self.lost)} documents without a correct committed output"
                       + (f" ({', '.join(self.lost[:10])})" if self.lost else ""))
            out.append("")
            out.append(format_table(m))
        if self.granularity:
            g = self.granularity
            out.append("")
            out.append(
                f"granularity effect: {g['documents']} document(s) were started in {g['min_restarts']} or more "
                f"killed passes each and never committed between kills (the largest has {g['largest_chunks']} "
                f"chunks; furthest any got: chunk {g['furthest_chunk']}).")
            out.append(
                "  Each resume restarts a document from chunk 0: resume granularity is the document. A document "
                "that needs longer than the time between kills never finishes while the kills go on; progress "
                f"stalled at {g['committed_at_stall']} of {g['unique']} documents. Chunk-level checkpoints would "
                "let it finish, at the price of one checkpoint write per chunk.")
        out.append("")
        out.append(f"result: {'OK' if self.ok else 'NOT OK'}: {self.duplicates} duplicates, {len(self.lost)} lost, "
                   f"{self.integrity_failures} integrity failures after {len(self.kills)} kills "
                   f"({self.elapsed_s:.0f} s)")
        return out


def integrity(run_dir: Path) -> dict[str, str]:
    """``PRAGMA integrity_check`` of every SQLite database in the run directory (``ok`` or the complaint)."""
    found: dict[str, str] = {}
    for path in sorted([RunDir(run_dir).sink, *RunDir(run_dir).state.rglob("*")]):
        try:
            if not path.is_file():
                continue
            with path.open("rb") as fh:
                if fh.read(16) != SQLITE_MAGIC:
                    continue
        except OSError:
            continue
        name = str(path.relative_to(run_dir))
        try:
            conn = sqlite3.connect(path, timeout=30)
            try:
                rows = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
            finally:
                conn.close()
            found[name] = "ok" if rows == ["ok"] else "; ".join(map(str, rows))[:500]
        except sqlite3.Error as exc:
            found[name] = f"{type(exc).__name__}: {exc}"
    return found


def _wait(predicate: Callable[[], bool], what: str, timeout: float = STEP_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise KitError(f"chaos: {what} did not happen within {timeout:g} s", code="chaos_stuck",
                           hints=["Is the machine overloaded? Rerun with fewer kills."])
        time.sleep(0.01)


def _granularity(events: Sequence[dict[str, Any]], killed_passes: set[int], documents: Sequence[Any],
                 unique: int) -> dict[str, Any] | None:
    """Documents restarted from chunk 0 in several killed passes without ever committing during the kills."""
    from ..documents import Document, ident_of, try_parse
    from ..pipeline import chunk_text, clean_text

    started: dict[str, set[int]] = defaultdict(set)
    furthest: dict[str, int] = defaultdict(int)
    committed: set[str] = set()
    for ev in events:
        if int(ev.get("pass", 0)) not in killed_passes:
            continue
        ident = ev.get("ident")
        if ev.get("ev") == "call_start" and isinstance(ident, str):
            if int(ev.get("chunk", 0)) == 0:
                started[ident].add(int(ev["pass"]))
            furthest[ident] = max(furthest[ident], int(ev.get("chunk", 0)))
        elif ev.get("ev") == "sink_put" and isinstance(ident, str):
            committed.add(ident)
    stuck = {i: len(p) for i, p in started.items() if i not in committed and len(p) >= RESTARTS_FOR_GRANULARITY}
    if not stuck:
        return None
    chunks: dict[str, int] = {}
    for raw in documents:
        doc = try_parse(raw)
        if isinstance(doc, Document) and ident_of(doc) in stuck:
            chunks[ident_of(doc)] = len(chunk_text(clean_text(doc.content)))
    return {
        "documents": len(stuck), "min_restarts": RESTARTS_FOR_GRANULARITY, "max_restarts": max(stuck.values()),
        "largest_chunks": max(chunks.values(), default=0), "furthest_chunk": max(furthest[i] for i in stuck),
        "committed_at_stall": len(committed), "unique": unique,
        "examples": sorted(({"ident": i, "restarts": n, "chunks": chunks.get(i), "furthest_chunk": furthest[i]}
                            for i, n in stuck.items()), key=lambda d: -int(d["chunks"] or 0))[:5],
    }


def run_chaos(  # noqa: C901 (issue 15 item 3)
    *,
    run_dir: str | Path,
    input_path: str | Path | None = None,
    kills: int = 20,
    min_s: float = 0.05,
    max_s: float = 1.5,
    seed: int = 15,
    impl: str | Path | None = None,
    extra_args: Sequence[str] = (),
    on_line: Callable[[str], None] | None = None,
    final_timeout_s: float = 900.0,
) -> ChaosResult:
    """Kill ``batchlab run`` and its worker ``kills`` times on ``run_dir``, then finish the batch; see the module."""
    from ..documents import load_batch
    from ..metrics import metrics_for_run
    from ..paths import example_input

    run = Path(run_dir)
    say = on_line or (lambda line: None)
    spec_file = RunDir(run).spec
    if input_path is None and spec_file.exists():
        try:
            input_path = json.loads(spec_file.read_text(encoding="utf-8"))["input"]
        except (OSError, ValueError, KeyError, TypeError):
            input_path = None
    source = Path(input_path) if input_path is not None else example_input()
    batch = load_batch(source)  # a bad input is refused before the first kill
    if not 0 <= min_s <= max_s:
        raise UsageError(f"the kill window {min_s:g}-{max_s:g} s is empty", code="usage_error",
                         hints=["Give --min-s <= --max-s, both >= 0."])
    say(f"chaos on {run}: {kills} SIGKILLs of `batchlab run` and its worker ({len(batch)} documents of "
        f"{source}), then one pass to the end")
    rng = random.Random(seed)
    result = ChaosResult(run_dir=run, input=source, window_s=(min_s, max_s), seed=seed)
    cmd = [sys.executable, "-m", "batchlab", "run", "--input", str(source), "--run-dir", str(run), "--wait", "60",
           *(["--impl", str(impl)] if impl else []), *extra_args]
    env = {**environ_snapshot(), "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    logs = Path(tempfile.mkdtemp(prefix="batchlab-chaos-"))
    live: list[subprocess.Popen[bytes]] = []
    worker_pids: list[int] = []
    t_start = time.monotonic()
    killed_passes: set[int] = set()

    def start(tag: str) -> subprocess.Popen[bytes]:
        with (logs / f"{tag}.out").open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                    start_new_session=True)
        live.append(proc)
        return proc

    tail = LedgerTail(RunDir(run).ledger)  # one reader for the whole run: each event is parsed once
    tail.read_new()
    commits_by_pass: dict[int, int] = defaultdict(int)

    def read_new() -> list[dict[str, Any]]:
        events = tail.read_new()
        for ev in events:
            if ev.get("ev") == "sink_put":
                commits_by_pass[int(ev.get("pass", 0))] += 1
        return events

    try:
        for n in range(1, kills + 1):
            read_new()
            cli = start(f"kill{n}")
            worker: dict[str, Any] = {}
            at_work = False

            def progressed() -> bool:
                nonlocal at_work
                for ev in read_new():
                    if ev.get("ev") == "pass_start" and not worker:
                        worker.update(pid=int(ev.get("pid", 0)), pass_no=int(ev.get("pass", 0)))
                    elif worker and ev.get("ev") in WORK_EVENTS:
                        at_work = True
                return at_work or cli.poll() is not None

            _wait(progressed, f"pass {n} getting to work")
            if not at_work:  # the command ended by itself: the batch is done (or cannot run), nothing to kill
                cli.wait()
                if cli.returncode == 0:
                    result.finished_early = True
                    say(f"the batch finished before kill {n}")
                else:
                    lines = (logs / f"kill{n}.out").read_text(encoding="utf-8", errors="replace").splitlines()
                    why = [ln.strip() for ln in lines if ln.startswith("pass ")][:1] + [
                        ln.strip() for ln in lines if "TODO" in ln or "Error" in ln][-1:]
                    result.stopped_early = (f"`batchlab run` ended by itself with exit {cli.returncode} before "
                                            f"kill {n}: " + " | ".join(why))
                    say(result.stopped_early)
                break
            delay = rng.uniform(min_s, max_s)
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and cli.poll() is None:
                time.sleep(0.005)
            pass_no, wpid = worker["pass_no"], worker["pid"]
            worker_pids.append(wpid)
            for pid in (cli.pid, wpid):  # the command first, its worker at once after: both SIGKILLed
                try:
                    os.killpg(pid, signal.SIGKILL) if pid == cli.pid else os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            cli.wait()
            _wait(lambda: not pid_alive(wpid), f"worker {wpid} exiting after its kill")
            _wait(lambda: not lock_is_held(run), "the run directory's lock being released")
            append_event(RunDir(run).ledger, "kill", pass_no=pass_no, kind="chaos", by="chaos",
                         delay=round(delay, 4), n=n)
            killed_passes.add(pass_no)
            read_new()
            commits = commits_by_pass[pass_no]
            kill = Kill(n=n, pass_no=pass_no, delay_s=round(delay, 3), commits=commits, cli_pid=cli.pid,
                        worker_pid=wpid, integrity=integrity(run))
            result.kills.append(kill)
            say(f"kill {n:>4}  pass {pass_no:>4}  after {delay:5.2f} s  commits {commits:>4}  integrity "
                f"{'ok' if kill.integrity_ok else kill.integrity}")
        final = start("final")
        try:
            final.wait(timeout=final_timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(final.pid, signal.SIGKILL)
            final.wait()
        text = (logs / "final.out").read_text(encoding="utf-8", errors="replace")
        first = text.strip().splitlines()[0] if text.strip() else ""
        result.final_outcome = f"exit {final.returncode}" + (f" ({first})" if first else "")
        result.final_integrity = integrity(run)
        result.metrics = metrics_for_run(run)
        result.granularity = _granularity(read_events(RunDir(run).ledger), killed_passes, batch.documents,
                                          result.metrics.unique)
    finally:
        for proc in live:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        for pid in worker_pids:
            if pid_alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for f in logs.iterdir():
            f.unlink()
        logs.rmdir()
        result.elapsed_s = time.monotonic() - t_start
    return result


def cmd_chaos(args: argparse.Namespace) -> int:
    quiet = args.json

    def say(line: str) -> None:
        if not quiet:
            print(line, flush=True)

    if args.kills < 0:
        raise UsageError("--kills must be >= 0", code="usage_error")
    extra = ["--seed", str(args.seed), "--fault-rate", str(args.fault_rate), "--concurrency", str(args.concurrency),
             "--latency-ms", str(args.latency_ms)]
    result = run_chaos(run_dir=args.run_dir, input_path=args.input, kills=args.kills, min_s=args.min_s,
                       max_s=args.max_s, seed=args.seed, impl=args.impl, extra_args=extra, on_line=say)
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2, default=str))
    else:
        print("\n".join(result.lines()))
    return EXIT_OK if result.ok else EXIT_FAILED


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("chaos", help="run a batch under N random SIGKILLs of `batchlab run` and its worker; "
                                            "integrity, duplicates and lost documents after each")
    p.add_argument("run_dir", type=Path, help="the run directory (resumed if it exists)")
    p.add_argument("--input", type=Path, default=None,
                   help="batch file (default: the run directory's own, else examples/input_example.json)")
    p.add_argument("--kills", type=int, default=20, help="how many SIGKILLs (default 20)")
    p.add_argument("--min-s", type=float, default=0.05, help="shortest time from a pass at work to its kill")
    p.add_argument("--max-s", type=float, default=1.5, help="longest time from a pass at work to its kill")
    p.add_argument("--seed", type=int, default=15, help="seed of the kill times and of the fault plan")
    p.add_argument("--fault-rate", type=float, default=0.03)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--latency-ms", type=float, default=10.0)
    p.add_argument("--impl", type=Path, default=None, help="implementation file (default: as `batchlab run`)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.set_defaults(func=cmd_chaos)
