"""A batch in PostgreSQL on a real server: schema, documents streamed in and out, the ledger as rows."""

from __future__ import annotations

from typing import Any

import pytest
from pgserver import need_psycopg

need_psycopg()

from batchlab.ledger import Ev
from batchlab.pgledger import HOLD_S, PassLedger, PgLedger
from batchlab.pgstore import (
    PgConnection,
    batch_info,
    import_events,
    is_store_url,
    iter_documents,
    iter_events,
    load_documents,
)


def docs(n: int) -> list[dict[str, Any]]:
    return [{"id": f"d{i}", "content": f"text {i} \u4e2d\u6587 \ud800", "source": "s"} for i in range(n)]


def test_a_batch_is_streamed_in_chunks_and_read_back_in_order(pg_db: str) -> None:
    """Twenty entries loaded seven at a time come back in input order, lone surrogate and all; the batch is loaded."""
    db = PgConnection(pg_db)
    assert load_documents(db, "b", iter(docs(20)), spec={"impl": "x.py"}, chunk=7) == 20
    assert list(iter_documents(db, "b", chunk=6)) == docs(20)
    assert batch_info(db, "b") == {"documents": 20, "loaded": True, "spec": {"impl": "x.py"}}
    assert batch_info(db, "other") is None and list(iter_documents(db, "other")) == []


def test_loading_a_batch_again_rewrites_the_same_rows(pg_db: str) -> None:
    """A load started again after a crash leaves one row per entry, not two."""
    db = PgConnection(pg_db)
    load_documents(db, "b", docs(5), chunk=2)
    load_documents(db, "b", docs(5), chunk=3)
    assert list(iter_documents(db, "b")) == docs(5)


def test_two_connections_create_the_schema_side_by_side(pg_db: str) -> None:
    """Workers that start together both create the schema (an advisory lock orders them), and both work."""
    first, second = PgConnection(pg_db), PgConnection(pg_db)
    load_documents(first, "b", docs(1))
    assert list(iter_documents(second, "b")) == docs(1)


def test_the_ledger_keeps_every_workers_events_in_order(pg_db: str) -> None:
    """Events emitted by two workers' ledgers, and a file ledger's imported, read back in write order with the envelope."""
    db = PgConnection(pg_db)
    one, two = PgLedger(db, "b", pass_no=1, clock=lambda: 5.0, pid=11), PgLedger(db, "b", pass_no=2, pid=22)
    one.emit(Ev.PASS_START, t0=1.0, batch_id="b", crash=None, at=None)
    two.emit(Ev.CALL_START, doc_id="d0", ident="i", chunk=0, attempt=1, call=1, inflight=1, doc_inflight=1)
    assert import_events(db, "b", [{"ev": "kill", "t": 9.0, "pass": 1, "pid": 1, "kind": "x"}]) == 1
    PgLedger(db, "other", pass_no=1).emit(Ev.PASS_START)
    events = list(iter_events(db, "b", chunk=2))
    assert [(e["ev"], e["pass"]) for e in events] == [("pass_start", 1), ("call_start", 2), ("kill", 1)]
    assert events[0] == {"ev": "pass_start", "t": 5.0, "pass": 1, "pid": 11, "t0": 1.0, "batch_id": "b",
                         "crash": None, "at": None}


def test_a_pass_ledger_writes_call_events_with_the_next_other_event_in_order(pg_db: str) -> None:
    """A fleet pass's call events wait in memory; the next event of another kind writes them first, then itself;
    a call event that waited HOLD_S is written at the next emit, and close writes what is left."""
    db = PgConnection(pg_db)
    now = [100.0]
    ledger = PassLedger(db, "b", pass_no=3, clock=lambda: now[0], pid=7)
    call = {"doc_id": "d0", "ident": "i", "chunk": 0, "attempt": 1, "call": 1, "inflight": 1, "doc_inflight": 1}
    ledger.emit(Ev.CALL_START, **call)
    ledger.emit(Ev.CALL_OK, **{**call, "latency": 0.02})
    assert list(iter_events(db, "b")) == []
    ledger.emit(Ev.SINK_PUT, doc_id="d0", ident="i", key="k", mode="full", n=1, writes=1, upgrade=False)
    assert [e["ev"] for e in iter_events(db, "b")] == ["call_start", "call_ok", "sink_put"]
    ledger.emit(Ev.CALL_START, **call)
    now[0] += HOLD_S
    ledger.emit(Ev.CALL_FAIL, **{**call, "error": "x", "permanent": False})
    assert [e["ev"] for e in iter_events(db, "b")][3:] == ["call_start", "call_fail"]
    ledger.emit(Ev.CALL_START, **call)
    ledger.close()
    events = list(iter_events(db, "b"))
    assert [e["ev"] for e in events][5:] == ["call_start"] and {e["pass"] for e in events} == {3}


@pytest.mark.parametrize(("text", "store"), [("postgresql://u@h/db", True), ("postgres://h/db", True),
                                             ("runs/demo", False), ("sqlite:///x", False)])
def test_a_store_url_is_told_from_a_run_directory(text: str, store: bool) -> None:
    """Only postgresql:// and postgres:// URLs name a PostgreSQL store."""
    assert is_store_url(text) is store


def test_a_store_made_before_shard_weights_gets_the_column_on_the_next_connection(pg_db: str) -> None:
    """A store whose lease table lacks the weight column (an older kit's) gets it, once, when a connection opens."""
    PgConnection(pg_db).transact(lambda c: c.execute("ALTER TABLE leases DROP COLUMN weight"))
    db = PgConnection(pg_db)
    row = db.transact(lambda c: c.execute("SELECT count(*) FROM information_schema.columns "
                                          "WHERE table_name = 'leases' AND column_name = 'weight'").fetchone())
    assert row is not None and row[0] == 1


def test_a_new_connection_does_not_wait_for_a_put_in_flight(pg_db: str) -> None:
    """Opening a store (every claim's renewal thread does) while another transaction writes an output runs no DDL
    that would queue behind it: the connection opens while that transaction is still open."""
    import threading

    import psycopg

    PgConnection(pg_db).close()
    writer = psycopg.connect(pg_db)
    writer.execute("INSERT INTO outputs (batch_id, key, doc_id, ident, mode, chunks, vectors, committed_at) "
                   "VALUES ('b', 'k', 'd', 'i', 'full', '[]', '[]', 0)")  # its transaction stays open
    opened = threading.Event()
    thread = threading.Thread(target=lambda: (PgConnection(pg_db).close(), opened.set()), daemon=True)
    thread.start()
    try:
        assert opened.wait(60), "the new connection waited for the open write transaction"
    finally:
        writer.rollback()
        writer.close()
        thread.join(60)
