"""The ledger of a batch in PostgreSQL: one row per event in the store's ``ledger`` table, every worker's together.

:class:`PgLedger` writes each event as it comes; :class:`PassLedger` (a fleet pass's) holds a service call's
events until the next write. Both can hand what they would write to a put's transaction
(:meth:`PgLedger.text`, :meth:`PgLedger.held`, :meth:`PgLedger.written`): :class:`batchlab.pgsink.PgSink` then
writes the held events and the put's own ``sink_put`` event in the put's transaction, so a put costs no round
trip of its own for the ledger, and a committed put can never be missing its ``sink_put`` event.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from .ledger import _short
from .pgstore import PgConnection

#: The statement that appends events: one ``(batch_id, event)`` row each.
INSERT = "INSERT INTO ledger (batch_id, event) VALUES "


def insert_rows(batch_id: str, texts: list[str]) -> tuple[str, list[str]]:
    """One multi-row INSERT of ``texts`` (events as JSON text, in order) and its parameters."""
    return INSERT + ", ".join(["(%s, %s)"] * len(texts)), [v for text in texts for v in (batch_id, text)]


class PgLedger:
    """The ledger of a worker whose batch lives in PostgreSQL: :class:`batchlab.ledger.Ledger`'s ``emit``, as rows.

    One committed INSERT per event (the row is there or not, never half there, as a ledger line); the
    envelope (``ev``, ``t``, ``pass``, ``pid``) is the file ledger's, so the metrics read both alike.
    """

    def __init__(self, db: PgConnection, batch_id: str, *, pass_no: int,
                 clock: Callable[[], float] = time.time, pid: int = 0) -> None:
        self.db, self.batch_id, self.pass_no = db, batch_id, pass_no
        self._clock = clock
        self._pid = pid or os.getpid()

    def record(self, ev: str, fields: dict[str, Any]) -> dict[str, Any]:
        """The event with its envelope (``ev``, ``t``, ``pass``, ``pid``), long strings shortened as in a file."""
        record: dict[str, Any] = {"ev": str(ev), "t": self._clock(), "pass": self.pass_no, "pid": self._pid}
        for name, value in fields.items():
            record[name] = _short(value) if type(value) is str else value
        return record

    def text(self, ev: str, **fields: Any) -> str:
        """The event as the row holds it (JSON text with the envelope; ASCII escapes: a lone surrogate fits too)."""
        return json.dumps(self.record(ev, fields), default=str)

    def emit(self, ev: str, **fields: Any) -> None:
        sql, params = insert_rows(self.batch_id, [self.text(ev, **fields)])
        self.db.statement(sql, params)

    def held(self) -> list[str]:
        """The events waiting for the next write, in order (none here: every event is written at once)."""
        return []

    def written(self) -> None:
        """The held events were written (by a put's transaction, which committed)."""

    def close(self) -> None:
        """Nothing to close: the connection is the caller's."""


#: The events a :class:`PassLedger` holds until the next write: a service call's, many per document.
HELD_EVENTS = frozenset({"call_start", "call_ok", "call_fail"})
#: The longest a held event waits for a write (seconds): calls without a put (an outage's retries) are written too.
HOLD_S = 0.25


class PassLedger(PgLedger):
    """A fleet pass's ledger on PostgreSQL: a service call's events are written with the next other event.

    :class:`PgLedger` waits for one INSERT per event: four or five per document (a call's start and end, the
    put), each a round trip during which the processor's event loop stands still, and on two shared cores the
    server's work for them competes with the workers'. Here ``call_*`` events are held in memory and written,
    in order, with the next put (in the put's transaction: :mod:`batchlab.pgsink`), or in one multi-row INSERT
    (one round trip) with the next event of any other kind (a pass's start, end or stop) or once the oldest has
    waited :data:`HOLD_S`, and at :meth:`close`. What a SIGKILL can take with it is the held events: the calls
    since the pass's last put, whose documents were in flight and are run again; every put, its ``sink_put``
    event and every other event are written before ``emit`` (or the put) returns, as with :class:`PgLedger`.
    """

    def __init__(self, db: PgConnection, batch_id: str, *, pass_no: int,
                 clock: Callable[[], float] = time.time, pid: int = 0) -> None:
        super().__init__(db, batch_id, pass_no=pass_no, clock=clock, pid=pid)
        self._held: list[str] = []
        self._since = 0.0

    def emit(self, ev: str, **fields: Any) -> None:
        record = self.record(ev, fields)
        if not self._held:
            self._since = record["t"]
        self._held.append(json.dumps(record, default=str))
        if str(ev) not in HELD_EVENTS or record["t"] - self._since >= HOLD_S:
            self.flush()

    def held(self) -> list[str]:
        return list(self._held)

    def written(self) -> None:
        self._held = []

    def flush(self) -> None:
        """Write the held events, in order, in one committed INSERT."""
        if not self._held:
            return
        sql, params = insert_rows(self.batch_id, self._held)
        self.db.statement(sql, params)
        self._held = []

    def close(self) -> None:
        """Write what is held (the connection is the caller's)."""
        self.flush()
