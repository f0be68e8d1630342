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

``python -m batchlab chaos`` is the same command (its options in :mod:`.chaos_cmd`). Every process it
starts is SIGKILLed on the way out (``finally``), whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ..batchstream import open_batch
from ..childproc import environ_snapshot, kill_group
from ..defaults import LESSON
from ..errors import KitError, UsageError
from ..host import pid_alive
from ..ledger import Ev, append_event, read_events
from ..metrics import metrics_for_run
from ..paths import example_input
from ..rundir import RunDir
from ..runlock import lock_is_held
from ..runner import WORK_EVENTS, LedgerTail, read_spec
from .chaos_result import ChaosResult, Kill, _granularity, integrity

#: Waiting for a pass to be at work, or for a killed process to be gone, never takes longer than this.
STEP_TIMEOUT_S = 120.0


def _wait(predicate: Callable[[], bool], what: str, timeout: float = STEP_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise KitError(f"chaos: {what} did not happen within {timeout:g} s", code="chaos_stuck",
                           hints=["Is the machine overloaded? Rerun with fewer kills."])
        time.sleep(0.01)


def _input_of(run: Path, input_path: str | Path | None) -> Path:
    """The batch file: the one given, else the run directory's own (its spec), else the kit's example."""
    if input_path is None and RunDir(run).spec.exists():
        try:
            input_path = read_spec(run).input
        except KitError:
            input_path = None
    return Path(input_path) if input_path is not None else example_input()


class _Session:
    """The processes of one chaos run: the ``batchlab run`` commands it starts, their workers, their output.

    One ledger reader for the whole run (each event is parsed once) counts the commits of each
    pass; :meth:`close` SIGKILLs whatever is still alive and removes the output folder.
    """

    def __init__(self, run: Path, cmd: Sequence[str]) -> None:
        self.run = run
        self.cmd = list(cmd)
        self.env = {**environ_snapshot(), "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        self.logs = Path(tempfile.mkdtemp(prefix="batchlab-chaos-"))
        self.live: list[subprocess.Popen[bytes]] = []
        self.worker_pids: list[int] = []
        self.killed_passes: set[int] = set()
        self.commits_by_pass: dict[int, int] = defaultdict(int)
        self.tail = LedgerTail(RunDir(run).ledger)
        self.tail.read_new()

    def start(self, tag: str) -> subprocess.Popen[bytes]:
        with (self.logs / f"{tag}.out").open("wb") as out:
            proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=self.env, start_new_session=True)
        self.live.append(proc)
        return proc

    def output(self, tag: str) -> str:
        return (self.logs / f"{tag}.out").read_text(encoding="utf-8", errors="replace")

    def read_new(self) -> list[dict[str, Any]]:
        events = self.tail.read_new()
        for ev in events:
            if ev.get("ev") == Ev.SINK_PUT:
                self.commits_by_pass[int(ev.get("pass", 0))] += 1
        return events

    def at_work(self, n: int, cli: subprocess.Popen[bytes]) -> dict[str, int] | None:
        """Wait until the pass of kill ``n`` is at work: its worker's pid and pass, or None if the command ended."""
        worker: dict[str, int] = {}
        working = False

        def progressed() -> bool:
            nonlocal working
            for ev in self.read_new():
                if ev.get("ev") == Ev.PASS_START and not worker:
                    worker.update(pid=int(ev.get("pid", 0)), pass_no=int(ev.get("pass", 0)))
                elif worker and ev.get("ev") in WORK_EVENTS:
                    working = True
            return working or cli.poll() is not None

        _wait(progressed, f"pass {n} getting to work")
        return worker if working else None

    def kill(self, n: int, cli: subprocess.Popen[bytes], worker: dict[str, int], delay: float) -> Kill:
        """SIGKILL the command and its worker, wait until both are gone and the lock is free, check integrity."""
        pass_no, wpid = worker["pass_no"], worker["pid"]
        self.worker_pids.append(wpid)
        kill_group(cli)  # the command's group first, its worker (in a session of its own) at once after
        with contextlib.suppress(ProcessLookupError):
            os.kill(wpid, signal.SIGKILL)
        cli.wait()
        _wait(lambda: not pid_alive(wpid), f"worker {wpid} exiting after its kill")
        _wait(lambda: not lock_is_held(self.run), "the run directory's lock being released")
        append_event(RunDir(self.run).ledger, Ev.KILL, pass_no=pass_no, kind="chaos", by="chaos",
                     delay=round(delay, 4), n=n)
        self.killed_passes.add(pass_no)
        self.read_new()
        return Kill(n=n, pass_no=pass_no, delay_s=round(delay, 3), commits=self.commits_by_pass[pass_no],
                    cli_pid=cli.pid, worker_pid=wpid, integrity=integrity(self.run))

    def close(self) -> None:
        for proc in self.live:
            if proc.poll() is None:
                kill_group(proc)
                proc.wait()
        for pid in self.worker_pids:
            if pid_alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for f in self.logs.iterdir():
            f.unlink()
        self.logs.rmdir()


def _ended_by_itself(session: _Session, n: int, cli: subprocess.Popen[bytes], result: ChaosResult) -> str:
    """The command of kill ``n`` ended before its pass got to work: the batch is done, or it cannot run."""
    cli.wait()
    if cli.returncode == 0:
        result.finished_early = True
        return f"the batch finished before kill {n}"
    lines = session.output(f"kill{n}").splitlines()
    why = [ln.strip() for ln in lines if ln.startswith("pass ")][:1] + [
        ln.strip() for ln in lines if "TODO" in ln or "Error" in ln][-1:]
    result.stopped_early = f"`batchlab run` ended by itself with exit {cli.returncode} before kill {n}: " + \
        " | ".join(why)
    return result.stopped_early


def _kill_rounds(session: _Session, result: ChaosResult, kills: int, rng: random.Random,
                 say: Callable[[str], None]) -> None:
    """Start ``batchlab run`` and SIGKILL it at a random moment after its pass is at work, ``kills`` times."""
    min_s, max_s = result.window_s
    for n in range(1, kills + 1):
        session.read_new()
        cli = session.start(f"kill{n}")
        worker = session.at_work(n, cli)
        if worker is None:
            say(_ended_by_itself(session, n, cli, result))
            return
        delay = rng.uniform(min_s, max_s)
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and cli.poll() is None:
            time.sleep(0.005)
        kill = session.kill(n, cli, worker, delay)
        result.kills.append(kill)
        say(f"kill {n:>4}  pass {kill.pass_no:>4}  after {delay:5.2f} s  commits {kill.commits:>4}  integrity "
            f"{'ok' if kill.integrity_ok else kill.integrity}")


def _final_pass(session: _Session, result: ChaosResult, documents: Iterable[Any], timeout_s: float) -> None:
    """One pass to the end, then the integrity check, the metrics and the granularity effect."""
    final = session.start("final")
    try:
        final.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill_group(final)
        final.wait()
    text = session.output("final")
    first = text.strip().splitlines()[0] if text.strip() else ""
    result.final_outcome = f"exit {final.returncode}" + (f" ({first})" if first else "")
    result.final_integrity = integrity(session.run)
    result.metrics = metrics_for_run(session.run)
    result.granularity = _granularity(read_events(RunDir(session.run).ledger), session.killed_passes, documents,
                                      result.metrics.unique)


def run_chaos(
    *,
    run_dir: str | Path,
    input_path: str | Path | None = None,
    kills: int = 20,
    min_s: float = 0.05,
    max_s: float = 1.5,
    seed: int = LESSON.seed,
    impl: str | Path | None = None,
    extra_args: Sequence[str] = (),
    on_line: Callable[[str], None] | None = None,
    final_timeout_s: float = 900.0,
) -> ChaosResult:
    """Kill ``batchlab run`` and its worker ``kills`` times on ``run_dir``, then finish the batch; see the module."""
    run = Path(run_dir)
    say = on_line or (lambda line: None)
    source = _input_of(run, input_path)
    batch = open_batch(source)  # streamed, validated first: a bad input is refused before the first kill
    if not 0 <= min_s <= max_s:
        raise UsageError(f"the kill window {min_s:g}-{max_s:g} s is empty", code="usage_error",
                         hints=["Give --min-s <= --max-s, both >= 0."])
    say(f"chaos on {run}: {kills} SIGKILLs of `batchlab run` and its worker ({len(batch)} documents of "
        f"{source}), then one pass to the end")
    result = ChaosResult(run_dir=run, input=source, window_s=(min_s, max_s), seed=seed)
    cmd = [sys.executable, "-m", "batchlab", "run", "--input", str(source), "--run-dir", str(run), "--wait", "60",
           *(["--impl", str(impl)] if impl else []), *extra_args]
    t_start = time.monotonic()
    session = _Session(run, cmd)
    try:
        _kill_rounds(session, result, kills, random.Random(seed), say)
        _final_pass(session, result, batch, final_timeout_s)
    finally:
        session.close()
        result.elapsed_s = time.monotonic() - t_start
    return result
