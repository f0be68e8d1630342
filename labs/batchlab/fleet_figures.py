"""A fleet's arithmetic: how many shards a batch is cut into, and, once it has run, how it ended.

Why a module of its own: these are pure functions of numbers, lease rows and ledger events; they start
no process and open no file, so they are tested, and asked (``batchlab run --store URL`` cuts its batch
before any worker exists), without loading the fleet's processes, leases and runner. :mod:`batchlab.fleet`
(the workers of a run directory) and :mod:`batchlab.pgfleet` (the same fleet on PostgreSQL) cut their batches
with :func:`default_shards` and report with :class:`FleetResult`. Every name is also importable from
:mod:`batchlab.fleet`, as before this module was split out of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .leases import DONE, ShardState
from .ledger import Ev

__all__ = ["MIN_SHARD_WAVES", "SHARDS_PER_WORKER", "FleetResult", "alone_tail", "default_shards"]

SHARDS_PER_WORKER = 2
#: A shard holds at least this many times the per-worker concurrency in documents (see :func:`default_shards`).
MIN_SHARD_WAVES = 25


@dataclass
class FleetResult:
    """How the fleet's batch ended: each worker's exit, each shard's row, the wall time and the lone tail."""

    exits: dict[str, int | None]
    shards: list[ShardState]
    seconds: float
    tail_s: float
    respawned: int = 0

    @property
    def complete(self) -> bool:
        return bool(self.shards) and all(s.state == DONE for s in self.shards)

    def lines(self) -> list[str]:
        done = sum(s.state == DONE for s in self.shards)
        taken = sum(max(0, s.claims - 1) for s in self.shards)
        return [f"{len(self.exits)} workers ({self.respawned} respawned): {done}/{len(self.shards)} shards done, "
                f"{taken} takeovers, {self.seconds:.2f} s, last worker alone {self.tail_s:.2f} s",
                *(f"  {name}: exit {code}" for name, code in sorted(self.exits.items()))]


def default_shards(workers: int, documents: int, concurrency: int) -> int:
    """1 or 2 shards per worker, the same number for each, none under :data:`MIN_SHARD_WAVES` x ``concurrency`` docs.

    Small shards cut the long tail; but each shard's pass reads the whole input to find its documents (the
    processor decides which entries are its shard's, by their keys), so k shards per worker cost each worker k
    reads of the batch: on PostgreSQL, 4 workers on 8 000 documents ran at 727 documents/s with 16 shards, 775
    with 8 and 796 with 4 (a third of a pass runner's time was that scan with 16). Two per worker keep half the
    tail-cutting at half that cost. And every pass starts with its window filling and ends with it draining
    (on a 400-document batch 8 workers ran at 530 documents/s with one shard each against 266 with four), and
    a count that is not a multiple of the workers leaves a last round for a few of them (8 workers on 10
    shards of 2000 documents: 547 documents/s, on 8 shards 760).
    """
    per_worker = documents // (MIN_SHARD_WAVES * concurrency * workers)
    return workers * max(1, min(SHARDS_PER_WORKER, per_worker))


def alone_tail(events: Iterable[Mapping[str, Any]], *, since_pass: int = 0) -> float:
    """How long, at the end of the batch, only one pass was running (the long tail), from the ledger."""
    spans: dict[int, list[float]] = {}
    for e in events:
        p = int(e.get("pass") or 0)
        if p <= since_pass or e.get("ev") not in (Ev.PASS_START, Ev.PASS_END, Ev.STOPPED, Ev.SINK_PUT):
            continue
        span = spans.setdefault(p, [float(e["t"]), float(e["t"])])
        span[1] = max(span[1], float(e["t"]))
    if len(spans) < 2:
        return 0.0
    ordered = sorted(spans.values(), key=lambda s: s[1])
    (start, end), before = ordered[-1], ordered[-2][1]
    # the last pass runs alone from the moment every other pass had ended (or from its own start, if later)
    return max(0.0, end - max(before, start))
