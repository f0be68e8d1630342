"""The metrics of a run in one streaming fold: input, sink and ledger each read once, in bounded memory.

:func:`batchlab.metrics.compute_metrics` (lists, the grader and the tests) and
:func:`batchlab.metrics.metrics_for_run` (a run directory) both end here. The definitions are
those of :mod:`batchlab.metrics`; this module only decides how to compute them without holding a
run: the sink's puts are copied into the fold's scratch database (:class:`batchlab.fold_store.FoldStore`,
in memory or on disk by the batch's size), the input is streamed one document at a time and judged
:data:`BLOCK` valid documents at a time (each first occurrence of an identity joined with its committed
outputs, compared with the oracle's as JSON texts, then dropped), then the ledger is streamed into one
small accumulator per pass (its worker lines read by one regular expression, :mod:`batchlab.ledger_scan`;
the accumulators in :mod:`batchlab.metric_ledger`). What grows
with the batch (identities, puts, first dispatches, latencies) lives in the scratch database past
:data:`batchlab.fold_store.SPILL_KEYS` keys; what stays in Python is a few counters per pass and the
lists the figures are (missing and wrong documents, duplicates: empty on a good run). The input's side
(:class:`InputFold`) lives in :mod:`batchlab.metric_input`, the ledger's in :mod:`batchlab.metric_ledger`; their
names are importable from here too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .fold_store import FoldStore
from .ledger_scan import Tick, Work
from .ledger_scan import read_ledger as read_ledger
from .ledger_views import PassMetrics
from .metric_input import BLOCK as BLOCK
from .metric_input import InputBlock as InputBlock
from .metric_input import InputFold as InputFold
from .metric_input import Judge as Judge
from .metric_input import Verdict as Verdict
from .metric_input import parsed_entries as parsed_entries
from .metric_input import verdict_of as verdict_of
from .metric_ledger import LedgerHalf as LedgerHalf
from .metric_ledger import PassFold as PassFold
from .metric_ledger import Tally as Tally
from .metric_ledger import fold_ledger as fold_ledger
from .metric_sinks import FileSink as FileSink
from .metric_sinks import ListSink as ListSink
from .metric_sinks import SinkDamage as SinkDamage

Event = Mapping[str, Any]


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
