"""What ``batchlab chaos`` found: each kill, the integrity checks, the final figures, the granularity effect.

The figures and their wording, apart from :mod:`.chaos` (which runs and kills the processes), so
that a reader finds "what does chaos report, and why" in one place, and the tests can build a
result without killing anything.
"""

from __future__ import annotations

import sqlite3
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..inventory import iter_entries
from ..ledger import Ev
from ..metrics import format_table
from ..pipeline import chunk_text, clean_text
from ..rundir import RunDir

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


def _granularity(events: Sequence[dict[str, Any]], killed_passes: set[int], documents: Iterable[Any],
                 unique: int) -> dict[str, Any] | None:
    """Documents restarted from chunk 0 in several killed passes without ever committing during the kills."""
    started: dict[str, set[int]] = defaultdict(set)
    furthest: dict[str, int] = defaultdict(int)
    committed: set[str] = set()
    for ev in events:
        if int(ev.get("pass", 0)) not in killed_passes:
            continue
        ident = ev.get("ident")
        if ev.get("ev") == Ev.CALL_START and isinstance(ident, str):
            if int(ev.get("chunk", 0)) == 0:
                started[ident].add(int(ev["pass"]))
            furthest[ident] = max(furthest[ident], int(ev.get("chunk", 0)))
        elif ev.get("ev") == Ev.SINK_PUT and isinstance(ident, str):
            committed.add(ident)
    stuck = {i: len(p) for i, p in started.items() if i not in committed and len(p) >= RESTARTS_FOR_GRANULARITY}
    if not stuck:
        return None
    chunks: dict[str, int] = {}  # of the stuck identities only, from a stream of the input: nothing else kept
    for entry in iter_entries(documents):
        doc = entry.document
        if doc is not None and entry.ident in stuck and entry.ident not in chunks:
            chunks[entry.ident] = len(chunk_text(clean_text(doc.content)))
    return {
        "documents": len(stuck), "min_restarts": RESTARTS_FOR_GRANULARITY, "max_restarts": max(stuck.values()),
        "largest_chunks": max(chunks.values(), default=0), "furthest_chunk": max(furthest[i] for i in stuck),
        "committed_at_stall": len(committed), "unique": unique,
        "examples": sorted(({"ident": i, "restarts": n, "chunks": chunks.get(i), "furthest_chunk": furthest[i]}
                            for i, n in stuck.items()), key=lambda d: -int(d["chunks"] or 0))[:5],
    }
