"""The metrics of a batch that lives in PostgreSQL: the same fold, fed from the store instead of a run directory.

``batchlab metrics --store URL --batch-id ID`` gives the keys a run directory gives, because nothing is
redefined here: the input, the ledger and the sink of :func:`batchlab.metric_fold.fold_run` come from the
store's ``documents``, ``ledger``, ``outputs`` and ``puts`` tables, read in pages, and
:func:`batchlab.metrics` turns what the fold found into :class:`batchlab.metrics.Metrics` as for a file.
"""

from __future__ import annotations

from typing import Any

from .errors import KitError
from .fold_store import SPILL_KEYS, FoldStore
from .metric_fold import ListSink, fold_run
from .metrics import Metrics, _metrics
from .pgsink import OUTPUT_COLUMNS, record
from .pgstore import PgConnection, batch_info, iter_documents, iter_events
from .sink import SinkRecord


class StoreSink(ListSink):
    """A batch's sink in PostgreSQL as the fold reads one: puts copied into the fold's store, outputs per identity."""

    def __init__(self, db: PgConnection, batch_id: str, *, page: int = 5000) -> None:
        super().__init__([], [])
        self._db, self._batch_id, self._page = db, batch_id, page

    def load_puts(self, store: FoldStore) -> None:
        after = -1
        while True:
            rows = self._db.transact(lambda c, a=after: c.execute(  # type: ignore[misc]
                "SELECT seq, ident, pass, upgrade FROM puts WHERE batch_id = %s AND seq > %s ORDER BY seq LIMIT %s",
                (self._batch_id, a, self._page)).fetchall())
            store.db.executemany("INSERT INTO puts VALUES (?, ?, ?, ?)",
                                 ((int(s), i, int(p), int(bool(u))) for s, i, p, u in rows))
            if len(rows) < self._page:
                return
            after = int(rows[-1][0])

    def records(self, ident: str) -> list[SinkRecord]:
        rows = self._db.transact(lambda c: c.execute(
            f"SELECT {OUTPUT_COLUMNS} FROM outputs WHERE batch_id = %s AND ident = %s ORDER BY key",
            (self._batch_id, ident)).fetchall())
        return [record(r) for r in rows]


def metrics_for_store(url: str, batch_id: str, *, on_disk: bool | None = None, spill_keys: int = SPILL_KEYS,
                      retry_s: float = 60.0) -> Metrics:
    """Metrics of one batch of a PostgreSQL store (every worker's ledger events together), as for a run directory.

    An unknown batch raises :class:`batchlab.errors.KitError` ``batch_not_found``; a server still unreachable
    after ``retry_s`` raises psycopg's error.
    """
    db = PgConnection(url, retry_s=retry_s)
    try:
        info = batch_info(db, batch_id)
        if info is None:
            raise KitError(f"the store has no batch {batch_id!r}", code="batch_not_found",
                           details={"batch_id": batch_id},
                           hints=["`batchlab run --store URL --batch-id ID --input FILE` starts one."])
        if on_disk is None:
            on_disk = int(info["documents"]) > spill_keys
        with FoldStore(on_disk=on_disk, spill_keys=spill_keys) as store:
            documents: Any = iter_documents(db, batch_id)
            return _metrics(fold_run(documents, iter_events(db, batch_id), StoreSink(db, batch_id), store))
    finally:
        db.close()
