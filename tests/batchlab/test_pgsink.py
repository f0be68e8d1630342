"""The PostgreSQL sink on a real server: SqliteSink's semantics, fenced writes, and a server restart survived."""

from __future__ import annotations

import itertools
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pgserver import PgServer, need_psycopg

need_psycopg()

from batchlab.documents import Document, ident_of
from batchlab.ledger import Ev
from batchlab.paths import solution_module
from batchlab.pgledger import PassLedger
from batchlab.pgsink import PgSink, ShardKeys, read_outputs, read_puts, shard_of
from batchlab.pgstore import PgConnection, iter_events
from batchlab.sink import SqliteSink
from batchlab.sink import read_outputs as sqlite_outputs
from batchlab.sink import read_puts as sqlite_puts
from batchlab.worker import load_impl


@pytest.fixture(scope="module")
def ref() -> ModuleType:
    """The reference solution, imported as the worker imports a student's module."""
    return load_impl(solution_module(), name="reference_pgsink")


A = Document(id="doc-a", content="Alpha text.", source="wiki")
B = Document(id="doc-b", content="Beta text.", source="wiki")

#: (key, doc, chunks, mode): a first write, a degraded one, a redo, an upgrade, a redo after the upgrade.
WRITES: list[tuple[str, Document, list[str], str]] = [
    ("ka", A, ["a1", "a2"], "full"),
    ("kb", B, ["b"], "degraded"),
    ("ka", A, ["a1", "a2"], "full"),
    ("kb", B, ["b1", "b2"], "full"),
    ("kb", B, ["b1", "b2"], "full"),
]


def replay(sink: Any) -> list[int]:
    """Put :data:`WRITES` through ``sink``; what each put returned."""
    return [sink.put(key, doc, chunks, [[0.5 * i] for i in range(len(chunks))], mode=mode)
            for key, doc, chunks, mode in WRITES]


def ticking() -> Any:
    """A clock that returns 1000.0, 1001.0, ...: both sinks see the same instants."""
    counter = itertools.count(1000)
    return lambda: float(next(counter))


def test_the_same_writes_leave_the_same_outputs_and_puts_as_sqlite(pg_db: str, tmp_path: Path) -> None:
    """Upserts, redo counts, the upgrade and the record of every put are SqliteSink's, write for write."""
    db = PgConnection(pg_db)
    pg_returns = replay(PgSink(db, "b1", pass_no=2, clock=ticking()))
    sqlite_returns = replay(SqliteSink(tmp_path / "sink.sqlite", pass_no=2, clock=ticking()))
    assert pg_returns == sqlite_returns == [1, 1, 2, 1, 2]
    assert read_outputs(db, "b1") == sorted(sqlite_outputs(tmp_path / "sink.sqlite"), key=lambda r: r.key)
    assert read_puts(db, "b1") == sqlite_puts(tmp_path / "sink.sqlite")
    assert [p["upgrade"] for p in read_puts(db, "b1")] == [False, False, False, True, False]


def test_batches_of_one_store_do_not_see_each_other(pg_db: str) -> None:
    """The same key in two batches is two outputs: every table is keyed by the batch."""
    db = PgConnection(pg_db)
    one, two = PgSink(db, "one"), PgSink(db, "two")
    assert one.put("k", A, ["x"], [[1.0]]) == 1 and two.put("k", A, ["y"], [[2.0]]) == 1
    rec = one.get("k")
    assert rec is not None and rec.chunks == ["x"] and one.keys() == {"k"} and "k" in two and "z" not in two


def test_a_refusing_guard_rolls_the_put_back(pg_db: str) -> None:
    """A guard that raises inside the transaction leaves no output and no put behind."""
    db = PgConnection(pg_db)

    def refuse(conn: Any, key: str) -> None:
        conn.execute("INSERT INTO fence_refusals (key, batch_id, shard, token, owner, t) "
                     "VALUES (%s, 'b', 0, 1, 'w', 0)", (key,))  # written in the put's transaction...
        raise PermissionError(key)

    with pytest.raises(PermissionError):
        PgSink(db, "b", guard=refuse).put("k", A, ["x"], [[1.0]])
    assert read_outputs(db, "b") == [] and read_puts(db, "b") == []
    assert db.transact(lambda c: c.execute("SELECT count(*) FROM fence_refusals").fetchone()) == (0,)  # ...rolled back


def test_a_put_after_a_server_restart_reconnects(pg: PgServer, pg_db: str) -> None:
    """The server crash-stopped and started again: the sink's next put reconnects, and the earlier one is kept."""
    db = PgConnection(pg_db)
    sink = PgSink(db, "b")
    assert sink.put("k1", A, ["x"], [[1.0]]) == 1
    pg.restart()
    assert sink.put("k2", B, ["y"], [[2.0]]) == 1
    assert db.reconnects == 1 and sink.keys() == {"k1", "k2"}
    assert [p["key"] for p in read_puts(db, "b")] == ["k1", "k2"]


def test_a_put_writes_the_held_events_and_its_sink_put_event_in_its_transaction(pg_db: str) -> None:
    """With a pass ledger of the store, the held call events and the put's sink_put event (writes and upgrade as the
    upsert found them) are written by the put itself, in order; nothing is left held, and a file ledger's event
    comes out the same."""
    db = PgConnection(pg_db)
    ledger = PassLedger(db, "b", pass_no=4, clock=lambda: 7.0, pid=9)
    sink = PgSink(db, "b", ledger=ledger, pass_no=4)
    ledger.emit(Ev.CALL_START, doc_id="doc-b", ident="i", chunk=0, attempt=1, call=1, inflight=1, doc_inflight=1)
    assert sink.put("kb", B, ["b"], [[1.0]], mode="degraded") == 1
    assert sink.put("kb", B, ["b1"], [[1.0]], mode="full") == 1  # an upgrade
    assert sink.put("kb", B, ["b1"], [[1.0]], mode="full") == 2  # a redo
    assert ledger.held() == []
    events = list(iter_events(db, "b"))
    assert [e["ev"] for e in events] == ["call_start", "sink_put", "sink_put", "sink_put"]
    assert [(e["n"], e["writes"], e["upgrade"], e["mode"]) for e in events[1:]] == [
        (1, 1, False, "degraded"), (2, 1, True, "full"), (3, 2, False, "full")]
    assert events[1] == {"ev": "sink_put", "t": 7.0, "pass": 4, "pid": 9, "doc_id": "doc-b", "ident": ident_of(B),
                         "key": "kb", "mode": "degraded", "n": 1, "writes": 1, "upgrade": False}


def test_a_refused_put_writes_no_event_and_keeps_the_held_ones(pg_db: str) -> None:
    """A put the guard refuses rolls its events back with it: the held call events wait for the next write."""
    db = PgConnection(pg_db)
    ledger = PassLedger(db, "b", pass_no=1)

    def refuse(conn: Any, key: str) -> None:
        raise PermissionError(key)

    ledger.emit(Ev.CALL_START, doc_id="doc-a", ident="i", chunk=0, attempt=1, call=1, inflight=1, doc_inflight=1)
    with pytest.raises(PermissionError):
        PgSink(db, "b", ledger=ledger, guard=refuse).put("k", A, ["x"], [[1.0]])
    assert list(iter_events(db, "b")) == [] and len(ledger.held()) == 1
    ledger.close()
    assert [e["ev"] for e in iter_events(db, "b")] == ["call_start"]


def test_the_servers_shard_of_a_key_is_the_lessons(pg_db: str, ref: ModuleType) -> None:
    """The committed keys ShardKeys reads for shard i/n are exactly those the reference's in_shard gives to i/n."""
    db = PgConnection(pg_db)
    sink = PgSink(db, "b")
    keys = [f"wiki|d{i}|{'中文' if i % 3 else 'x'}{i}|chunks" for i in range(60)]
    for key in keys:
        sink.put(key, A, ["x"], [[1.0]])
    for i in range(7):
        got = ShardKeys(db, "b", i, 7)
        assert [key for key in keys if got.known(key)] == [key for key in keys if ref.in_shard(key, f"{i}/7")]
        assert all(shard_of(key, 7) == i for key in keys if ref.in_shard(key, f"{i}/7"))


def test_a_fenced_sink_answers_for_its_shard_from_what_it_read_and_put(pg_db: str) -> None:
    """Keys of the sink's shard: committed before it read them, or put by it since, are in it, others not, without
    asking again; a key of another shard, and every key once the shard holds more than the cap, is asked of the
    server."""
    db = PgConnection(pg_db)
    mine = [k for k in (f"k{i}" for i in range(40)) if shard_of(k, 4) == 1]
    theirs = [k for k in (f"k{i}" for i in range(40)) if shard_of(k, 4) != 1]
    PgSink(db, "b").put(mine[0], A, ["x"], [[1.0]])
    sink = PgSink(db, "b", shard=(1, 4))
    assert mine[0] in sink and mine[1] not in sink
    PgSink(db, "b").put(theirs[0], A, ["x"], [[1.0]])  # another shard's key: asked of the server
    sink.put(mine[1], A, ["x"], [[1.0]])
    assert mine[1] in sink and theirs[0] in sink and theirs[1] not in sink
    keys = ShardKeys(db, "b", 1, 4, cap=2)
    assert keys.known(mine[0]) is True and keys.known(theirs[0]) is None
    keys.put(mine[2])
    assert keys.known(mine[2]) is None  # three keys: over the cap, every answer comes from the server
