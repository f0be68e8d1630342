"""``batchlab bench --scale``: what a batch of N documents costs the kit, at the sizes the lecture speaks of.

For each N (10 000 and 100 000; 1 000 000 with ``--million``) it writes a JSON Lines input
(``make-input``'s generator, documents of 200-600 bytes), then drives the kit's own commands as
child processes, the way a user would, on the reference processor and a zero-latency service
without faults (``batchlab run --latency-ms 0 --fault-rate 0``), so every figure is the kit's
orchestration and nothing else:

* **first pass**: ``batchlab run --no-metrics`` on a new run directory: the pass's wall (worker start to
  its last event) and committed documents a second; the peak RSS of every process of the run (the CLI,
  which validates the input as a stream and follows the ledger, and the worker); ledger, checkpoint
  (``state/``) and sink sizes. Every ``run`` here skips the metrics table it would print (a fold of the whole
  run, minutes at a million): the metrics are measured apart, by their own command;
* **no-op rerun**: ``batchlab run`` again on the finished directory: its wall, CLI start to exit, the
  pass's own wall (worker start to its last event), and the peak RSS of its processes;
* **metrics**: ``batchlab metrics --json`` on it: wall and peak RSS;
* **resume after a kill at 99 %**: a second run directory, the first pass killed right after its
  commit number ``0.99 x`` (the first run's commits), then ``batchlab run`` to resume it: the
  resumed worker's start to its first service call on a document not yet committed (the
  metrics' resume time). With ``one_pass`` (``--one-pass``, for a million) the first pass *is* the
  killed one, and the resume, the no-op rerun and the metrics follow on that run directory: half the work.

Peak RSS per process comes from psutil samples every :data:`.bench_child.SAMPLE_S` (the CLI and each
descendant, by role); the largest process's exact peak from ``wait4``'s ``ru_maxrss``. The bench
measures whatever the kit does: when the processor reads through a window and resumes from a
global offset, the same command shows it. Figures vary with the machine and its load (quoted).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..examples import iter_documents, write_documents
from ..metrics import metrics_for_run
from ..rundir import RunDir
from .bench_child import SAMPLE_S, Child, folder_bytes, run_child

DEFAULT_SIZES = (10_000, 100_000)
MILLION = 1_000_000
#: What ``batchlab run`` gets besides the input and the run directory: zero latency, no faults.
#: ``--no-metrics``: the run commands do not fold the whole run to print its table; ``metrics --json`` is measured
#: apart (at a million documents each fold is minutes, and it would be most of a no-op rerun's wall).
RUN_ARGS = ("--latency-ms", "0", "--fault-rate", "0", "--timeout", "7200", "--no-metrics")


@dataclass
class ScaleRow:
    """The figures of one N (sizes in bytes, times in seconds)."""

    documents: int
    input_bytes: int
    unique: int
    first_pass_s: float
    first_pass_committed: int
    first_pass_cli_s: float
    rss_worker: int
    rss_cli: int
    rss_largest: int
    ledger_bytes: int
    checkpoint_bytes: int
    sink_bytes: int
    noop_rerun_s: float
    noop_rerun_calls: int
    noop_rss_worker: int
    noop_rss_cli: int
    noop_rss_largest: int
    metrics_s: float
    metrics_rss: int
    kill_at: int
    resume_first_call_s: float | None
    resume_pass_s: float
    resume_rss_largest: int
    #: The first pass is the one killed at 99 % (``--one-pass``): its wall and peaks are those of 99 % of the batch.
    one_pass: bool = False
    #: The no-op pass alone (worker start to its last event), without the CLI's start and the metrics it prints.
    noop_pass_s: float = 0.0

    @property
    def docs_per_s(self) -> float:
        return self.first_pass_committed / self.first_pass_s if self.first_pass_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "docs_per_s": self.docs_per_s}


def _checked(child: Child, what: str) -> Child:
    if child.returncode not in (0,):
        raise RuntimeError(f"{what}: `batchlab {' '.join(child.argv)}` exited {child.returncode}:\n"
                           f"{child.output[-2000:]}")
    return child


def _metrics_json(child: Child, run: Path) -> dict[str, Any]:
    """The figures ``batchlab metrics --json`` printed (the bench does not fold the run a second time)."""
    try:
        data = json.loads(child.output)
    except ValueError:
        data = None
    return data if isinstance(data, dict) and "per_pass" in data else metrics_for_run(run).to_dict()


def _said(say: Callable[[str], None], n: int, what: str, child: Child) -> None:
    """Each child's figures as soon as it ends: a long bench stopped half way still leaves them in its log."""
    peaks = ", ".join(f"{role} {v / 1e6:.1f} MB" for role, v in sorted(child.peak_rss.items()))
    say(f"N={n}: {what}: {child.wall_s:.1f} s, exit {child.returncode}, peak RSS {peaks}; "
        f"largest {child.max_rss / 1e6:.1f} MB")


def measure(n: int, work: Path, *, say: Callable[[str], None] = lambda _: None, one_pass: bool = False) -> ScaleRow:
    """Every figure of one N, in ``work`` (an input, two run directories; one with ``one_pass``).

    ``one_pass`` halves the work at a million: the first pass is the one killed at 99 % (of the unique
    documents, counted from the input as a stream), so its wall and peak RSS are those of 99 % of the batch;
    the resume, the no-op rerun and the metrics follow on the same run directory.
    """
    source = work / f"input-{n}.jsonl"
    write_documents(source, iter_documents(n, min_bytes=200, max_bytes=600), format="jsonl")
    if one_pass:
        return _measure_one_pass(n, work, source, say)
    run, killed = work / f"run-{n}", work / f"killed-{n}"
    say(f"N={n}: first pass")
    first = _checked(run_child(["run", "--input", str(source), "--run-dir", str(run), *RUN_ARGS], cwd=work, say=say),
                     "first pass")
    _said(say, n, "first pass", first)
    sizes = (folder_bytes(RunDir(run).ledger), folder_bytes(RunDir(run).state), folder_bytes(RunDir(run).sink))
    noop = _checked(run_child(["run", "--input", str(source), "--run-dir", str(run), *RUN_ARGS], cwd=work, say=say),
                    "no-op rerun")
    _said(say, n, "no-op rerun", noop)
    mcmd = _checked(run_child(["metrics", str(run), "--json"], cwd=work, say=say), "metrics")
    _said(say, n, "metrics", mcmd)
    figures = _metrics_json(mcmd, run)
    p1, p2 = figures["per_pass"][0], figures["per_pass"][1]
    kill_at = max(1, math.floor(0.99 * p1["committed"]))
    say(f"N={n}: kill at commit {kill_at}, then resume")
    run_child(["run", "--input", str(source), "--run-dir", str(killed), "--crash", "after_commit",
               "--at", str(kill_at), *RUN_ARGS], cwd=work, say=say)
    resume = _checked(run_child(["run", "--input", str(source), "--run-dir", str(killed), *RUN_ARGS], cwd=work, say=say),
                      "resume")
    _said(say, n, "resume", resume)
    resumed = metrics_for_run(killed).passes[-1]
    return _row(n, source, figures, first=first, sizes=sizes, noop=noop, mcmd=mcmd, resume=resume, kill_at=kill_at,
                resume_first_call_s=resumed.resume_time_s, noop_pass=p2, one_pass=False)


def _row(n: int, source: Path, figures: dict[str, Any], *, first: Child, sizes: tuple[int, int, int], noop: Child,
         mcmd: Child, resume: Child, kill_at: int, resume_first_call_s: float | None, noop_pass: dict[str, Any],
         one_pass: bool) -> ScaleRow:
    """One N's :class:`ScaleRow` from its children and the metrics' figures (both ways of :func:`measure`)."""
    p1 = figures["per_pass"][0]
    return ScaleRow(
        documents=n, input_bytes=source.stat().st_size, unique=figures["unique"], first_pass_s=p1["wall_s"],
        first_pass_committed=p1["committed"], first_pass_cli_s=first.wall_s,
        rss_worker=first.peak_rss.get("worker", 0), rss_cli=first.peak_rss.get("cli", 0), rss_largest=first.max_rss,
        ledger_bytes=sizes[0], checkpoint_bytes=sizes[1], sink_bytes=sizes[2],
        noop_rerun_s=noop.wall_s, noop_rerun_calls=noop_pass["calls"], noop_rss_worker=noop.peak_rss.get("worker", 0),
        noop_rss_cli=noop.peak_rss.get("cli", 0), noop_rss_largest=noop.max_rss,
        metrics_s=mcmd.wall_s, metrics_rss=mcmd.max_rss, kill_at=kill_at,
        resume_first_call_s=resume_first_call_s, resume_pass_s=resume.wall_s, resume_rss_largest=resume.max_rss,
        one_pass=one_pass, noop_pass_s=noop_pass["wall_s"])


def _measure_one_pass(n: int, work: Path, source: Path, say: Callable[[str], None]) -> ScaleRow:
    """:func:`measure` with ``one_pass``: killed at 99 %, resumed, rerun, measured, all on one run directory."""
    from ..batchstream import open_batch
    from ..inventory import count_input, spills

    stream = open_batch(source)
    unique = count_input(stream, on_disk=spills(len(stream))).unique
    kill_at = max(1, math.floor(0.99 * unique))
    run = work / f"run-{n}"
    say(f"N={n}: first pass, killed after commit {kill_at} of {unique}")
    first = run_child(["run", "--input", str(source), "--run-dir", str(run), "--crash", "after_commit",
                       "--at", str(kill_at), *RUN_ARGS], cwd=work, say=say)
    _said(say, n, "first pass (killed at 99 %)", first)
    resume = _checked(run_child(["run", "--input", str(source), "--run-dir", str(run), *RUN_ARGS], cwd=work, say=say),
                      "resume")
    _said(say, n, "resume", resume)
    sizes = (folder_bytes(RunDir(run).ledger), folder_bytes(RunDir(run).state), folder_bytes(RunDir(run).sink))
    noop = _checked(run_child(["run", "--input", str(source), "--run-dir", str(run), *RUN_ARGS], cwd=work, say=say),
                    "no-op rerun")
    _said(say, n, "no-op rerun", noop)
    mcmd = _checked(run_child(["metrics", str(run), "--json"], cwd=work, say=say), "metrics")
    _said(say, n, "metrics", mcmd)
    figures = _metrics_json(mcmd, run)
    p1, p2, p3 = figures["per_pass"][:3]
    say(f"N={n}: first pass wall {p1['wall_s']:.1f} s, {p1['committed']} committed; resume first call "
        f"{p2['resume_time_s']} s; no-op rerun {p3['calls']} calls")
    return _row(n, source, figures, first=first, sizes=sizes, noop=noop, mcmd=mcmd, resume=resume, kill_at=kill_at,
                resume_first_call_s=p2["resume_time_s"], noop_pass=p3, one_pass=True)


def run_scale(sizes: Sequence[int] = DEFAULT_SIZES, *, workdir: Path | None = None,
              say: Callable[[str], None] = lambda _: None, one_pass: bool = False) -> dict[str, Any]:
    """The figures for every N in ``sizes`` (each in its own folder, deleted unless ``workdir`` is given)."""
    rows = []
    for n in sizes:
        if workdir is not None:
            folder = workdir / f"n{n}"
            folder.mkdir(parents=True, exist_ok=True)
            rows.append(measure(n, folder, say=say, one_pass=one_pass))
            continue
        with tempfile.TemporaryDirectory(prefix=f"batchlab-scale-{n}-") as name:
            rows.append(measure(n, Path(name), say=say, one_pass=one_pass))
    return {"sizes": list(sizes), "load_average": list(os.getloadavg()), "cpus": os.cpu_count(),
            "rows": [r.to_dict() for r in rows]}


def _mb(value: float) -> str:
    return f"{value / 1e6:,.1f} MB"


COLUMNS: tuple[tuple[str, Callable[[dict[str, Any]], str]], ...] = (
    ("N", lambda r: f"{r['documents']:,}"),
    ("input", lambda r: _mb(r["input_bytes"])),
    ("first pass", lambda r: f"{r['first_pass_s']:.1f} s"),
    ("docs/s", lambda r: f"{r['docs_per_s']:,.0f}"),
    ("RSS worker", lambda r: _mb(r["rss_worker"])),
    ("RSS CLI", lambda r: _mb(r["rss_cli"])),
    ("ledger", lambda r: _mb(r["ledger_bytes"])),
    ("checkpoint", lambda r: _mb(r["checkpoint_bytes"])),
    ("kill@99% -> 1st call", lambda r: "n/a" if r["resume_first_call_s"] is None else f"{r['resume_first_call_s']:.2f} s"),
    ("no-op rerun: command (pass)", lambda r: f"{r['noop_rerun_s']:.1f} s ({r.get('noop_pass_s', 0):.2f} s), "
                                              f"{_mb(r['noop_rss_largest'])}"),
    ("metrics", lambda r: f"{r['metrics_s']:.1f} s, {_mb(r['metrics_rss'])}"),
)


def format_scale(result: dict[str, Any]) -> str:
    """The figures as a Markdown table (the README's), with the machine's load when they were taken."""
    head = "| " + " | ".join(name for name, _ in COLUMNS) + " |"
    lines = [head, "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(r) for _, cell in COLUMNS) + " |" for r in result["rows"]]
    load = ", ".join(f"{x:.1f}" for x in result["load_average"])
    lines.append(f"\n{result['cpus']} CPUs, load average at the end {load}; RSS peaks sampled every "
                 f"{SAMPLE_S * 1000:.0f} ms (CLI: `batchlab run --no-metrics`, which validates the input as a stream and follows the ledger; "
                 "the metrics by their own command).")
    return "\n".join(lines)
