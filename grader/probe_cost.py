"""Probe check of the checkpoint hot spot: the cost of one transition as the checkpoint grows.

A *small* store gets ``small`` keys; a *big* one (another state directory) grows
towards ``levels[-1]`` keys, within ``budget_s`` seconds of filling. Each
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

from __future__ import annotations

import gc
import os
import statistics
import time
from pathlib import Path
from typing import Any

from batchlab.contract import PROCESSING

from .probe_common import need, student_code

#: Transitions of the big store per fill step (and the window of the "bytes grew" test).
FILL_STEP = 50
#: The fewest pairs a measurement keeps once it has run past ``measure_s``.
MIN_PAIRS = 21


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


def key(i: int) -> str:
    return f"cost-{i:06d}"


def median(values: list[Any]) -> Any:
    """The median of the known values (None for an unknown byte count), None when none is known."""
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def ratio(big: float | None, small: float | None) -> float | None:
    """``big / small``; a zero-cost small store makes any cost an infinite ratio (and zero against zero 1)."""
    if big is None or small is None:
        return None
    if small <= 0:
        return 1.0 if big <= 0 else float("inf")
    return big / small


class CostProbe:
    """One run of the measurement: the two stores, the figures so far, and the steps that grow and measure."""

    def __init__(self, store_cls: Any, args: dict[str, Any]) -> None:
        self.store_cls = store_cls
        self.small_n, self.samples = int(args["small"]), int(args["samples"])
        self.levels, self.budget_s = [int(n) for n in args["levels"]], float(args["budget_s"])
        self.time_limit, self.bytes_limit = float(args["time_ratio"]), float(args["bytes_ratio"])
        self.measure_s = float(args.get("measure_s", 3.0))
        self.root = Path(args["work"])
        self.writes = WriteCounter()
        self.measured: list[dict[str, Any]] = []
        self.size, self.fill_s = 0, 0.0
        self.small: Any = None
        self.big: Any = None
        self.baseline: Any = None

    def timed(self, store: Any, k: str, **kwargs: Any) -> tuple[float, int | None]:
        """One ``processing`` transition of ``k``: its seconds and the bytes it wrote."""
        w0 = self.writes.read()
        t = time.perf_counter()
        store.transition(k, PROCESSING, **kwargs)
        elapsed = time.perf_counter() - t
        w1 = self.writes.read()
        return elapsed, (None if w0 is None or w1 is None else w1 - w0)

    def open_stores(self) -> None:
        """Open both stores, fill the small one, and note its bytes per transition (the fill's yardstick)."""
        with student_code():
            self.small = self.store_cls(str(self.root / "small-state"), "batch-cost-small")
            self.big = self.store_cls(str(self.root / "big-state"), "batch-cost-big")
            for i in range(self.small_n):
                self.small.transition(key(i), PROCESSING, doc_id=f"doc-{i}")
        with student_code():
            self.baseline = median([self.timed(self.small, key(n % self.small_n))[1] for n in range(MIN_PAIRS)])

    def measure(self, why: str) -> dict[str, Any]:
        """Time transitions on the two stores in alternation at the big store's present size; keep the row."""
        gc.collect()
        gc.disable()
        try:
            small_t: list[tuple[float, int | None]] = []
            big_t: list[tuple[float, int | None]] = []
            m0 = time.perf_counter()
            with student_code():
                for n in range(self.samples):
                    small_t.append(self.timed(self.small, key((n * 7919) % self.small_n)))
                    big_t.append(self.timed(self.big, key((n * 7919) % self.size)))
                    if n >= MIN_PAIRS - 1 and time.perf_counter() - m0 > self.measure_s:
                        break  # a slow store: 21 pairs or more are enough for a median
        finally:
            gc.enable()
        row = {"size": self.size, "why": why, "samples": len(small_t),
               "small_ms": median([t for t, _ in small_t]) * 1e3, "big_ms": median([t for t, _ in big_t]) * 1e3,
               "small_bytes": median([b for _, b in small_t]), "big_bytes": median([b for _, b in big_t])}
        row["time_ratio"] = ratio(row["big_ms"], row["small_ms"])
        row["bytes_ratio"] = ratio(row["big_bytes"], row["small_bytes"])
        self.measured.append(row)
        return row

    def too_costly(self, row: dict[str, Any]) -> bool:
        return bool(row["time_ratio"] > self.time_limit
                    or (row["bytes_ratio"] is not None and row["bytes_ratio"] > self.bytes_limit))

    def fill_step(self, level: int) -> float | None:
        """Add up to :data:`FILL_STEP` keys to the big store; how their median bytes compare to the small store's."""
        step_bytes = []
        t0 = time.perf_counter()
        with student_code():
            for i in range(self.size, min(level, self.size + FILL_STEP)):
                step_bytes.append(self.timed(self.big, key(i), doc_id=f"doc-{i}")[1])
        self.fill_s += time.perf_counter() - t0
        self.size = min(level, self.size + FILL_STEP)
        return ratio(median(step_bytes), self.baseline)

    def fill_to(self, level: int) -> str:
        """Grow the big store to ``level``: ``done``, or why it stopped early (``budget`` or ``ratio``)."""
        while self.size < level:
            if self.fill_s >= self.budget_s:
                return "budget"
            grown = self.fill_step(level)
            if (self.size < level and grown is not None and grown > self.bytes_limit
                    and self.too_costly(self.measure("bytes grew"))):
                return "ratio"
        return "done"

    def run(self) -> str:
        """Every level in turn, measured when reached; how the run ended."""
        for level in self.levels:
            stopped = self.fill_to(level)
            if stopped != "done":
                return stopped
            if self.too_costly(self.measure("level")):
                return "ratio"
        return "done"

    def close(self) -> None:
        with student_code():
            self.small.close()
            self.big.close()


def check_checkpoint_cost(module: Any, args: dict[str, Any]) -> dict[str, Any]:
    """The cost of one transition in a small checkpoint against a growing one (the module docstring's method)."""
    probe = CostProbe(need(module, "CheckpointStore"), args)
    probe.open_stores()
    stopped = probe.run()
    if stopped == "budget":
        probe.measure("budget")
    probe.close()
    return {"small": probe.small_n, "levels": probe.measured, "stopped": stopped, "fill_s": probe.fill_s,
            "bytes_counted": probe.writes.fd is not None}
