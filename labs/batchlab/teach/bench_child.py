"""A command of the kit run as a child process and watched: its wall, exit code and peak memory by role.

Apart from :mod:`.bench_scale` (which commands, at which sizes, and the table) because this is how any one
command is measured, whatever it is: ``batchlab ARGV`` in a child, a psutil sampler thread reading the RSS
of the command (``cli``) and of its descendants (``worker``) every :data:`SAMPLE_S`, the exact peak from
``wait4``'s ``ru_maxrss``, and a progress line every :data:`PROGRESS_S` so a long child stopped early
leaves its peaks so far.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..rundir import RunDir

#: Seconds between two RSS samples of a child and its descendants.
SAMPLE_S = 0.05
#: How often a running child's peaks so far are logged.
PROGRESS_S = 60.0


@dataclass
class Child:
    """One command of the kit, run as a child process: its wall, exit code and peak memory by process role."""

    argv: list[str]
    wall_s: float = 0.0
    returncode: int | None = None
    peak_rss: dict[str, int] = field(default_factory=dict)
    #: ``ru_maxrss`` from ``wait4``: the largest of the process and its descendants, exact (bytes)
    max_rss: int = 0
    output: str = ""


def run_child(argv: Sequence[str], *, cwd: Path, say: Callable[[str], None] = lambda _: None) -> Child:
    """Run ``batchlab ARGV`` in a child, sampling the RSS of it (``cli``) and of its descendants (``worker``).

    Every :data:`PROGRESS_S` seconds ``say`` gets the peaks so far: a long child stopped early leaves them.
    """
    import psutil

    child = Child(argv=list(argv))
    out = cwd / f"child-{time.monotonic_ns()}.out"
    t0 = time.perf_counter()
    with out.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "batchlab", *argv], cwd=cwd, stdout=sink,
                                stderr=subprocess.STDOUT)
    done = threading.Event()
    sampler = threading.Thread(target=_sample, args=(psutil.Process(proc.pid), child.peak_rss, done, say, _ledger_of(argv)),
                               daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    child.wall_s = time.perf_counter() - t0
    done.set()
    sampler.join()
    proc.returncode = child.returncode = os.waitstatus_to_exitcode(status)
    child.max_rss = int(usage.ru_maxrss) * 1024
    child.output = out.read_text(encoding="utf-8", errors="replace")
    out.unlink()
    return child


def _ledger_of(argv: Sequence[str]) -> Path | None:
    """The ledger of the run directory a ``run`` child works on (its growth shows a long pass's progress)."""
    args = list(argv)
    return RunDir(Path(args[args.index("--run-dir") + 1])).ledger if "--run-dir" in args else None


def _sample(proc: Any, peaks: dict[str, int], done: threading.Event, say: Callable[[str], None],
            ledger: Path | None) -> None:
    import psutil

    t0 = next_say = time.monotonic()
    while not done.is_set():
        if time.monotonic() >= next_say + PROGRESS_S:
            next_say = time.monotonic()
            say(f"  ... {next_say - t0:.0f} s, peak RSS so far: "
                + ", ".join(f"{role} {v / 1e6:.1f} MB" for role, v in sorted(peaks.items()))
                + (f"; ledger {folder_bytes(ledger) / 1e6:.0f} MB" if ledger is not None else ""))
        try:
            procs = [("cli", proc)] + [("worker", p) for p in proc.children(recursive=True)]
        except psutil.Error:
            return
        for role, p in procs:
            try:
                peaks[role] = max(peaks.get(role, 0), int(p.memory_info().rss))
            except psutil.Error:
                continue
        done.wait(SAMPLE_S)


def folder_bytes(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (a checkpoint may be several files)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0
