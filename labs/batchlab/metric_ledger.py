"""The ledger's side of the metric fold: one accumulator per pass, fed the ledger's events, ticks and work in order.

Split from :mod:`batchlab.metric_fold` (the whole fold), which re-exports these names; the input's side is
:mod:`batchlab.metric_input`. :func:`fold_ledger` reads what :func:`batchlab.ledger_scan.scan_ledger` yields
(or plain events): :class:`Tally` keeps the run-wide figures, :class:`PassFold` each pass's, and the result,
:class:`LedgerHalf`, is plain data, so it can cross a pipe from :mod:`batchlab.metric_child`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .fold_store import SPILL_KEYS, FoldStore, Latencies, SpillMap
from .ledger import CRASH_EVENTS, Ev
from .ledger_scan import Tick, Work
from .ledger_views import PassFirsts, PassMetrics, usable_event

Event = Mapping[str, Any]


@dataclass
class Tally:
    """Run-wide figures of the whole ledger: retries, peak concurrency, failed calls by error, interruptions."""

    retries: int = 0
    max_inflight: int = 0
    max_doc_inflight: int = 0
    max_attempt: int = 0
    call_errors: Counter[str] = field(default_factory=Counter)
    crashes: list[dict[str, Any]] = field(default_factory=list)

    def see(self, ev: Event) -> None:
        kind = ev["ev"]
        if kind == Ev.CALL_START:
            self.max_inflight = max(self.max_inflight, int(ev.get("inflight", 0)))
            self.max_doc_inflight = max(self.max_doc_inflight, int(ev.get("doc_inflight", 0)))
            self.max_attempt = max(self.max_attempt, int(ev.get("attempt", 0)))
            if int(ev.get("attempt", 1)) > 1:
                self.retries += 1
        elif kind == Ev.CALL_FAIL:
            self.call_errors[str(ev.get("error"))] += 1
        elif kind in CRASH_EVENTS:
            self.crashes.append(dict(ev))

    def work(self, work: Work) -> None:
        """:meth:`see` for a run of calls and commits read by the fast path, at once."""
        if work.calls:
            self.max_inflight = max(self.max_inflight, work.max_inflight)
            self.max_doc_inflight = max(self.max_doc_inflight, work.max_doc_inflight)
            self.max_attempt = max(self.max_attempt, work.max_attempt)
            self.retries += work.retries


class PassFold:
    """One pass's accumulator: fed its events in ledger order, it becomes a :class:`PassMetrics`."""

    def __init__(self, pass_no: int, store: FoldStore, latencies: Latencies,
                 committed_before: Callable[[str, int], bool] | None = None) -> None:
        self.pass_no = pass_no
        self.firsts = PassFirsts()
        self.first_t: float | None = None
        self.last_t = -math.inf
        self.counts = Counter[str]()
        self.first_new_call: float | None = None
        self._committed_before = committed_before or store.committed_before
        self._spill_keys = store.spill_keys
        self._latencies = latencies
        self._dispatched = SpillMap(store, pass_no)

    def tick(self, first: float, last: float) -> None:
        """Events of the pass from time ``first`` on, ``last`` the largest (all a ``state`` or ``call_ok`` tells the fold)."""
        if self.first_t is None:
            self.first_t = first
        if last > self.last_t:
            self.last_t = last

    def see(self, ev: Event) -> None:
        t = float(ev["t"])
        self.tick(t, t)
        self.firsts.see(ev)
        kind = ev["ev"]
        if kind == Ev.CALL_START:
            self.counts["calls"] += 1
            if int(ev.get("attempt", 1)) > 1:
                self.counts["retries"] += 1
            self._dispatched.setdefault(ev["ident"], t)
            if self.first_new_call is None and not self._committed_before(ev["ident"], self.pass_no):
                self.first_new_call = t
        elif kind == Ev.CALL_FAIL:
            self.counts["call_failures"] += 1
        elif kind == Ev.SINK_PUT:
            self.counts["committed"] += 1
            self.counts["upgraded"] += 1 if ev.get("upgrade") is True else 0
            t0 = self._dispatched.pop(ev["ident"])
            if t0 is not None:
                self._latencies.add(self.pass_no, t - t0)

    def work(self, work: Work) -> None:
        """:meth:`see` for each call and commit of ``work`` in order (its times are in the tick before it).

        The counts are added at once; the first dispatches and the latencies are a loop over plain lists:
        through the dict itself while it cannot pass its threshold, else through :class:`SpillMap`.
        """
        counts = self.counts
        counts["calls"] += work.calls
        counts["retries"] += work.retries
        counts["committed"] += work.committed
        counts["upgraded"] += work.upgraded
        lines = zip(work.starts, work.idents, work.times, strict=True)
        dispatched, found = self._dispatched, []
        if self.first_new_call is None:  # the calls until the pass's first on a new identity: looked up one by one
            for start, ident, t in lines:
                if not start:
                    if (t0 := dispatched.pop(ident)) is not None:
                        found.append(t - t0)
                    continue
                dispatched.setdefault(ident, t)
                if not self._committed_before(ident, self.pass_no):
                    self.first_new_call = t
                    break
        setdefault: Callable[[str, float], object] = dispatched.setdefault
        pop: Callable[[str, None], float | None] = dispatched.pop
        if not dispatched.spilled and len(dispatched.mem) + work.calls <= self._spill_keys:
            setdefault, pop = dispatched.mem.setdefault, dispatched.mem.pop  # no call can make it spill
        for start, ident, t in lines:
            if start:
                setdefault(ident, t)
            elif (t0 := pop(ident, None)) is not None:
                found.append(t - t0)
        self._latencies.extend(self.pass_no, found)

    def partial(self, sample: int) -> tuple[PassMetrics, float | None]:
        """The pass's figures that its own events give, and its first call on a new identity (or None).

        What needs the input's identities too (hits, what was left) is :func:`complete_pass`'s: the two
        halves of the fold may run in two processes (:mod:`batchlab.metric_child`).
        """
        start, end, crash = self.firsts.start, self.firsts.end, self.firsts.crash
        started = float(start.get("t0", start["t"])) if start else float(self.first_t or 0.0)
        pm = PassMetrics(pass_no=self.pass_no, started=started, ended=self.last_t, exit=self.firsts.exit(),
                         crash=dict(crash) if crash else None, committed=self.counts["committed"],
                         calls=self.counts["calls"], retries=self.counts["retries"],
                         call_failures=self.counts["call_failures"], upgraded=self.counts["upgraded"])
        if end is not None and end["ev"] == Ev.PASS_END:
            pm.report = end.get("report")
        elif end is not None:
            pm.student_error = str(end.get("error", ""))
        lat = self._latencies
        pm.latency_count = lat.count(self.pass_no)
        pm.latency_p50_s, pm.latency_p95_s = lat.percentile(50, self.pass_no), lat.percentile(95, self.pass_no)
        step = max(1, math.ceil(pm.latency_count / sample))
        pm.latencies_s = lat.sample(self.pass_no, step)
        return pm, self.first_new_call


@dataclass
class LedgerHalf:
    """The ledger's side of the fold: run-wide tallies, each pass's own figures, the run's latency percentiles.

    Plain data (it crosses a pipe from :mod:`batchlab.metric_child`); :func:`complete_pass` adds the rest.
    """

    tally: Tally
    passes: list[tuple[PassMetrics, float | None]]
    latency_p50_s: float | None
    latency_p95_s: float | None


def fold_ledger(events: Iterable[Event | Tick | Work], store: FoldStore,
                committed_before: Callable[[str, int], bool] | None = None) -> LedgerHalf:
    """Fold the ledger into one accumulator per pass; who was committed before a pass: ``committed_before``.

    By default ``store.committed_before`` (the sink's puts copied into ``store`` and indexed). ``events``
    may hold :data:`batchlab.ledger_scan.Tick` ``(pass, first t, largest t)`` and
    :class:`batchlab.ledger_scan.Work` among the events (:func:`batchlab.ledger_scan.scan_ledger`): usable
    events read by the fast path, that count as times in their pass, and its calls and commits.
    """
    tally = Tally()
    latencies = Latencies(store)
    folds: dict[int, PassFold] = {}
    for raw_ev in events:
        if type(raw_ev) is tuple:
            pass_no, first, last = raw_ev
            if pass_no > 0:
                fold = folds.get(pass_no)
                if fold is None:
                    fold = folds[pass_no] = PassFold(pass_no, store, latencies, committed_before)
                fold.tick(first, last)
            continue
        if type(raw_ev) is Work:
            tally.work(raw_ev)
            pass_no = raw_ev.pass_no
            if pass_no > 0:
                fold = folds.get(pass_no)
                if fold is None:
                    fold = folds[pass_no] = PassFold(pass_no, store, latencies, committed_before)
                fold.work(raw_ev)
            continue
        ev = usable_event(raw_ev)  # type: ignore[arg-type]
        if ev is None:
            continue
        tally.see(ev)
        pass_no = ev["pass"]
        if pass_no > 0:
            fold = folds.get(pass_no)
            if fold is None:
                fold = folds[pass_no] = PassFold(pass_no, store, latencies, committed_before)
            fold.see(ev)
    return LedgerHalf(tally=tally, passes=[folds[p].partial(SPILL_KEYS) for p in sorted(folds)],
                      latency_p50_s=latencies.percentile(50), latency_p95_s=latencies.percentile(95))
