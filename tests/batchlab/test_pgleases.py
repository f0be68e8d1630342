"""Shard leases in PostgreSQL on a real server: the protocol of batchlab.leases, SKIP LOCKED claims, the fence."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from pgserver import need_psycopg

need_psycopg()

import psycopg
from batchlab.documents import Document
from batchlab.leases import DONE, FREE, HELD, LeaseError, StaleLease
from batchlab.ledger import Ev
from batchlab.pgleases import PgLeaseStore
from batchlab.pgledger import PassLedger
from batchlab.pgsink import PgSink, read_outputs, read_puts
from batchlab.pgstore import PgConnection, iter_events

DOC = Document(id="doc-1", content="Some text.", source="wiki")


@pytest.fixture
def store(pg_db: str) -> PgLeaseStore:
    """A lease store on a fresh database, with batch ``b`` split into 3 shards."""
    leases = PgLeaseStore(PgConnection(pg_db))
    leases.create_shards("b", 3)
    return leases


def test_the_heaviest_free_shard_is_claimed_first_but_an_expired_one_before_it(pg_db: str) -> None:
    """Free shards go heaviest first (then by number); a held shard that expired still goes before them."""
    store = PgLeaseStore(PgConnection(pg_db))
    store.create_shards("w", 4, [5.0, 9.0, 1.0, 9.0])
    first = store.claim("w", "a", now=0.0, lease_s=1.0)
    assert first is not None and first.shard == 1
    second = store.claim("w", "b", now=5.0, lease_s=1.0)  # shard 1's lease expired at 1.0
    assert second is not None and second.shard == 1 and second.token == 2
    order = [store.claim("w", "c", now=5.0, lease_s=10.0) for _ in range(3)]
    assert [lease.shard for lease in order if lease] == [3, 0, 2]


def test_claims_take_free_shards_in_order_each_with_its_first_token(store: PgLeaseStore) -> None:
    """Three claims get shards 0, 1, 2 with token 1; a fourth finds nothing claimable."""
    leases = [store.claim("b", f"w{i}", now=100.0, lease_s=10.0) for i in range(3)]
    assert [(ls.shard, ls.token, ls.spec) for ls in leases if ls] == [(0, 1, "0/3"), (1, 1, "1/3"), (2, 1, "2/3")]
    assert store.claim("b", "w3", now=105.0, lease_s=10.0) is None
    assert [s.state for s in store.shards("b")] == [HELD, HELD, HELD]


def test_an_expired_lease_is_claimed_again_with_a_higher_token(store: PgLeaseStore) -> None:
    """Past its expiry a held shard is taken over: token 2, the takeover in the history, the old renew refused."""
    old = store.claim("b", "dead", now=100.0, lease_s=10.0)
    for i in (1, 2):
        store.finish(store.claim("b", f"x{i}", now=100.0, lease_s=10.0))  # type: ignore[arg-type]
    assert old is not None and store.claim("b", "w", now=109.0, lease_s=10.0) is None  # not expired yet
    new = store.claim("b", "w", now=110.0, lease_s=10.0)
    assert new is not None and (new.shard, new.token) == (0, 2) and store.claim_seq(new) > store.claim_seq(old)
    assert not store.renew(old, now=111.0, lease_s=10.0) and not store.finish(old)
    took = store.db.transact(lambda c: c.execute(
        "SELECT took_over_from FROM lease_claims WHERE batch_id = 'b' AND shard = 0 ORDER BY seq").fetchall())
    assert took == [(None,), ("dead",)]


def test_an_expired_shard_is_claimed_before_a_free_one(store: PgLeaseStore) -> None:
    """A dead worker's shard is taken over by the next claim, before the free shards still waiting."""
    dead = store.claim("b", "dead", now=100.0, lease_s=10.0)
    taken = store.claim("b", "w", now=200.0, lease_s=10.0)
    assert dead is not None and taken is not None and (taken.shard, taken.token) == (dead.shard, 2)
    assert [s.state for s in store.shards("b")] == [HELD, FREE, FREE]


def test_a_rescue_claims_only_another_owners_expired_shard(store: PgLeaseStore) -> None:
    """``expired_only``: no free shard, no unexpired one, not the claimer's own; then the dead owner's, token up."""
    assert store.claim("b", "w2", now=100.0, lease_s=10.0, expired_only=True) is None  # all free
    dead = store.claim("b", "dead", now=100.0, lease_s=10.0)
    own = store.claim("b", "w2", now=100.0, lease_s=10.0)
    assert dead is not None and own is not None
    assert store.claim("b", "w2", now=105.0, lease_s=10.0, expired_only=True) is None  # not expired yet
    rescue = store.claim("b", "w2", now=200.0, lease_s=10.0, expired_only=True)
    assert rescue is not None and (rescue.shard, rescue.token) == (dead.shard, dead.token + 1), rescue
    assert store.claim("b", "w2", now=300.0, lease_s=10.0, expired_only=True) is None  # its own, though expired
    assert [s.state for s in store.shards("b")] == [HELD, HELD, FREE]


def test_renew_finish_and_release_act_only_for_the_current_holder(store: PgLeaseStore) -> None:
    """Renew extends the expiry; release frees the shard (the next claim increments the token); finish ends it."""
    lease = store.claim("b", "w", now=100.0, lease_s=10.0)
    assert lease is not None and store.renew(lease, now=108.0, lease_s=10.0)
    assert store.check(lease, now=117.0) and not store.check(lease, now=118.0)
    assert store.release(lease) and store.shards("b")[0].state == FREE and not store.check(lease, now=101.0)
    again = store.claim("b", "w", now=120.0, lease_s=10.0)
    assert again is not None and (again.shard, again.token) == (0, 2) and store.finish(again)
    assert store.shards("b")[0].state == DONE and store.claim("b", "v", now=1e9, lease_s=1.0).shard != 0  # type: ignore[union-attr]


def test_another_shard_count_for_the_same_batch_is_refused(store: PgLeaseStore) -> None:
    """create_shards is idempotent for the same count and raises LeaseError for another."""
    store.create_shards("b", 3)
    with pytest.raises(LeaseError, match="already has 3 shards"):
        store.create_shards("b", 4)


def test_a_stale_token_write_is_refused_in_the_sink_transaction(store: PgLeaseStore) -> None:
    """A zombie's put after its shard was taken over raises StaleLease and commits nothing; the new holder's commits."""
    zombie = store.claim("b", "zombie", now=100.0, lease_s=10.0)
    for i in (1, 2):
        store.finish(store.claim("b", f"x{i}", now=100.0, lease_s=10.0))  # type: ignore[arg-type]
    fresh = store.claim("b", "fresh", now=200.0, lease_s=10.0)  # the only claimable shard: the zombie's, expired
    assert zombie is not None and fresh is not None and (fresh.shard, fresh.token) == (zombie.shard, 2)
    zombie_sink = PgSink(store.db, "b", guard=store.fence(zombie, lambda: 201.0))
    with pytest.raises(StaleLease, match="token 1 of zombie"):
        zombie_sink.put("k", DOC, ["late"], [[0.0]])
    assert read_outputs(store.db, "b") == [] and read_puts(store.db, "b") == []
    PgSink(store.db, "b", guard=store.fence(fresh, lambda: 201.0)).put("k", DOC, ["x"], [[1.0]])
    fenced = store.db.transact(lambda c: c.execute(
        "SELECT key, owner, token, claims_seen FROM fenced_puts").fetchall())
    assert fenced == [("k", "fresh", 2, store.claim_seq(fresh))] and [r.chunks for r in read_outputs(store.db, "b")] == [["x"]]


def test_an_expired_lease_cannot_write_even_before_a_takeover(store: PgLeaseStore) -> None:
    """The fence also refuses a holder past its expiry that nobody replaced yet (it might be replaced any moment)."""
    lease = store.claim("b", "slow", now=100.0, lease_s=10.0)
    assert lease is not None
    with pytest.raises(StaleLease):
        PgSink(store.db, "b", guard=store.fence(lease, lambda: 110.0)).put("k", DOC, ["x"], [[1.0]])
    assert read_puts(store.db, "b") == []


def test_a_claim_skips_a_shard_another_transaction_holds_locked(pg_db: str, store: PgLeaseStore) -> None:
    """SKIP LOCKED: while another connection holds shard 0's row, a claim takes shard 1 at once instead of waiting."""
    store.db.transact(lambda c: c.execute("SET lock_timeout = '5s'"))  # a waiting claim would fail, not hang
    with psycopg.connect(pg_db) as other:
        other.execute("SELECT 1 FROM leases WHERE batch_id = 'b' AND shard = 0 FOR UPDATE")
        lease = store.claim("b", "w", now=100.0, lease_s=10.0)
        assert lease is not None and lease.shard == 1
        other.rollback()
    again = store.claim("b", "w", now=100.0, lease_s=10.0)
    assert again is not None and again.shard == 0


CLAIMER = textwrap.dedent("""
    import json, sys, time
    from batchlab.pgleases import PgLeaseStore
    from batchlab.pgstore import PgConnection
    store = PgLeaseStore(PgConnection(sys.argv[1]))
    got = []
    while (lease := store.claim("race", sys.argv[2], now=time.time(), lease_s=600.0)) is not None:
        got.append([lease.shard, lease.token])
    print(json.dumps(got))
""")


def test_processes_racing_to_claim_get_different_shards(pg_db: str) -> None:
    """Four processes claiming 40 shards at once: each shard goes to exactly one of them, with token 1."""
    PgLeaseStore(PgConnection(pg_db)).create_shards("race", 40)
    procs = [subprocess.Popen([sys.executable, "-c", CLAIMER, pg_db, f"w{i}"], stdout=subprocess.PIPE, text=True)
             for i in range(4)]
    claims = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    shards = sorted(shard for got in claims for shard, _ in got)
    assert shards == list(range(40)) and {token for got in claims for _, token in got} == {1}


def test_a_refused_put_writes_none_of_its_events_and_the_connection_goes_on(store: PgLeaseStore) -> None:
    """The fence's check fails the zombie's whole transaction on the server: no fenced put, no sink_put event, the
    held call event still held; the same connection then commits the fresh holder's put with its events."""
    zombie = store.claim("b", "zombie", now=100.0, lease_s=10.0)
    assert zombie is not None
    store.release(zombie)
    fresh = store.claim("b", "fresh", now=100.0, lease_s=10.0)
    assert fresh is not None and fresh.shard == zombie.shard
    ledger = PassLedger(store.db, "b", pass_no=1)
    ledger.emit(Ev.CALL_START, doc_id="d", ident="i", chunk=0, attempt=1, call=1, inflight=1, doc_inflight=1)
    with pytest.raises(StaleLease):
        PgSink(store.db, "b", ledger=ledger, guard=store.fence(zombie, lambda: 101.0)).put("k", DOC, ["late"], [[0.0]])
    assert list(iter_events(store.db, "b")) == [] and len(ledger.held()) == 1
    assert store.db.transact(lambda c: c.execute("SELECT count(*) FROM fenced_puts").fetchone()) == (0,)
    PgSink(store.db, "b", ledger=ledger, guard=store.fence(fresh, lambda: 101.0)).put("k", DOC, ["x"], [[1.0]])
    assert [e["ev"] for e in iter_events(store.db, "b")] == ["call_start", "sink_put"]
    assert [r.chunks for r in read_outputs(store.db, "b")] == [["x"]]
