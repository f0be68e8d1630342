"""The metrics of a run in one streaming fold: input, sink and ledger each read once, in bounded memory.

:func:`batchlab.metrics.compute_metrics` (lists, the grader and the tests) and
:func:`batchlab.metrics.metrics_for_run` (a run directory) both end here. The definitions are
those of :mod:`batchlab.metrics`; this module only decides how to compute them without holding a
run: the sink's puts are copied into the fold's scratch database (:class:`batchlab.fold_store.FoldStore`,
in memory or on disk by the batch's size), the input is streamed one document at a time and judged
:data:`BLOCK` valid documents at a time (each first occurrence of an identity joined with its committed
outputs, compared with the oracle's as JSON texts, then dropped), then the ledger is streamed into one
small accumulator per pass (its time-only lines as ticks, :mod:`batchlab.ledger_scan`). What grows
with the batch (identities, puts, first dispatches, latencies) lives in the scratch database past
:data:`batchlab.fold_store.SPILL_KEYS` keys; what stays in Python is a few counters per pass and the
lists the figures are (missing and wrong documents, duplicates: empty on a good run). The input's side
(:class:`InputFold`) lives in :mod:`batchlab.metric_input`; its names are importable from here too.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .fold_store import SPILL_KEYS, FoldStore, Latencies, SpillMap
from .ledger import CRASH_EVENTS, Ev
from .ledger_scan import Tick, Work
from .ledger_scan import read_ledger as read_ledger
from .ledger_views import PassFirsts, PassMetrics, usable_event
from .metric_input import BLOCK as BLOCK
from .metric_input import InputBlock as InputBlock
from .metric_input import InputFold as InputFold
from .metric_input import Judge as Judge
from .metric_input import Verdict as Verdict
from .metric_input import parsed_entries as parsed_entries
from .metric_input import verdict_of as verdict_of
from .metric_sinks import FileSink as FileSink
from .metric_sinks import ListSink as ListSink
from .metric_sinks import SinkDamage as SinkDamage

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
        pm.latencies_s = [v for i, v in enumerate(lat.values(self.pass_no)) if i % step == 0]
        return pm, self.first_new_call


def complete_pass(pm: PassMetrics, first_new_call: float | None, unique: int, store: FoldStore,
                  hits: int | None = None) -> PassMetrics:
    """A pass's hits, lookups and resume time, from the store's identities (the input) and puts (the sink).

    ``hits``, when given, is the pass's from :func:`hits_by_pass` (all passes in one walk of the puts).
    """
    db = store.db
    before = "EXISTS (SELECT 1 FROM puts p WHERE p.ident = i.ident AND p.pass < ?)"
    pm.lookups = unique
    pm.hits = hits if hits is not None else db.execute(
        f"SELECT COUNT(*) FROM idents i WHERE {before} AND NOT EXISTS "
        "(SELECT 1 FROM puts p WHERE p.ident = i.ident AND p.pass = ?)", (pm.pass_no, pm.pass_no)).fetchone()[0]
    if pm.pass_no > 1:
        if first_new_call is not None:
            pm.resume_time_s = first_new_call - pm.started
        elif not db.execute(f"SELECT 1 FROM idents i WHERE NOT {before} LIMIT 1", (pm.pass_no,)).fetchone():
            pm.resume_time_s = 0.0  # nothing was left to do
    return pm


def hits_by_pass(passes: Sequence[int], store: FoldStore) -> list[int]:
    """Each pass's hits (input identities committed before it and not in it), in one walk of the puts by identity.

    :func:`complete_pass`'s query asked once per pass walks every identity of the input each time; this
    groups the puts of the input's identities once, each group's first pass and whether it holds each pass.
    """
    if not passes:
        return []
    nums = [int(p) for p in passes]  # integers written into the SQL text, never strings
    held = ", ".join(f"MAX(pass = {p}) AS h{k}" for k, p in enumerate(nums))
    sums = ", ".join(f"COALESCE(SUM(first < {p} AND h{k} = 0), 0)" for k, p in enumerate(nums))
    row = store.db.execute(f"SELECT {sums} FROM (SELECT MIN(pass) AS first, {held} FROM puts "
                           "WHERE ident IN (SELECT ident FROM idents) GROUP BY ident)").fetchone()
    return [int(v) for v in row]


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


@dataclass
class Folded:
    """Everything the fold found: :func:`batchlab.metrics.compute_metrics` turns it into :class:`Metrics`."""

    inputs: InputFold
    tally: Tally
    passes: list[PassMetrics]
    duplicates: list[tuple[str, str, list[int]]]
    upgraded: int
    latency_p50_s: float | None
    latency_p95_s: float | None


def fold_run(documents: Iterable[Any], events: Iterable[Event | Tick | Work], sink: ListSink | FileSink,
             store: FoldStore, *, ledger: Callable[[], LedgerHalf | None] | None = None,
             between: Callable[[], None] | None = None,
             rest: Callable[[InputFold, FoldStore, Judge], None] | None = None) -> Folded:
    """Fold one run: puts into the store, then the input, then the ledger (each read once, in order).

    ``ledger``, when given, is asked for the ledger's half once the input is folded (computed meanwhile in
    another process: :mod:`batchlab.metric_child`); when it answers None, ``events`` are folded here.
    ``between`` is called between two blocks of the input and ``rest`` folds what follows ``documents``
    (:class:`batchlab.metric_split.InputSplit`: the end of the input folded by that process).
    """
    sink.load_puts(store)
    store.index_puts()
    inputs = InputFold()
    inputs.see_all(documents, store, sink, between)
    if rest is not None:
        rest(inputs, store, sink)
    half = ledger() if ledger is not None else None
    if half is None:
        half = fold_ledger(events, store)
    hits = hits_by_pass([pm.pass_no for pm, _ in half.passes], store)
    passes = [complete_pass(pm, first_new, inputs.unique, store, hits=h)
              for (pm, first_new), h in zip(half.passes, hits, strict=True)]
    return Folded(inputs=inputs, tally=half.tally, passes=passes, duplicates=_duplicates(store),
                  upgraded=store.db.execute("SELECT COUNT(*) FROM puts WHERE upgrade").fetchone()[0],
                  latency_p50_s=half.latency_p50_s, latency_p95_s=half.latency_p95_s)


def _duplicates(store: FoldStore) -> list[tuple[str, str, list[int]]]:
    """``(ident, first document id, passes)`` of every identity executed more than once (upgrades left out).

    Sorted by identity (SQLite's binary order of UTF-8 is Python's order of code points), each
    identity's passes in commit order.
    """
    rows = store.db.execute(
        "SELECT p.ident, COALESCE(i.doc_id, p.ident), p.pass FROM puts p LEFT JOIN idents i ON i.ident = p.ident "
        "WHERE NOT p.upgrade AND p.ident IN (SELECT ident FROM puts WHERE NOT upgrade GROUP BY ident "
        "HAVING COUNT(*) > 1) ORDER BY p.ident, p.seq")
    out: list[tuple[str, str, list[int]]] = []
    for ident, doc_id, pass_no in rows:
        if not out or out[-1][0] != ident:
            out.append((ident, doc_id, []))
        out[-1][2].append(int(pass_no))
    return out
