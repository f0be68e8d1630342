"""batchlab.leases: claim, renew, finish and fence shard leases on a real SQLite file (and across processes)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from batchlab.documents import Document
from batchlab.leases import FREE, HELD, LeaseError, SqliteLeaseStore, StaleLease
from batchlab.sink import SqliteSink


@pytest.fixture
def store(tmp_path: Path) -> SqliteLeaseStore:
    """A lease store with batch ``b`` in two shards."""
    s = SqliteLeaseStore(tmp_path / "sink.sqlite")
    s.create_shards("b", 2)
    return s


class TestClaim:
    def test_claims_take_free_shards_first_then_none_until_a_lease_expires(self, store: SqliteLeaseStore) -> None:
        """Two claims get the two free shards; a third gets nothing; after expiry it takes the shard over."""
        a = store.claim("b", "w1", now=0.0, lease_s=1.0)
        b = store.claim("b", "w2", now=0.0, lease_s=1.0)
        assert a is not None and b is not None and {a.shard, b.shard} == {0, 1}
        assert store.claim("b", "w3", now=0.9, lease_s=1.0) is None
        assert store.renew(b, now=0.9, lease_s=1.0)
        c = store.claim("b", "w3", now=1.5, lease_s=1.0)
        assert c is not None and c.shard == a.shard and c.owner == "w3"

    def test_the_token_grows_on_every_claim_and_expired_shards_go_first(self, store: SqliteLeaseStore) -> None:
        """Each claim of a shard increments its token, the same owner's too; an expired shard beats a free one."""
        tokens = []
        for i in range(3):
            lease = store.claim("b", "w1", now=10.0 * i, lease_s=1.0)
            assert lease is not None
            tokens.append((lease.shard, lease.token))
        assert tokens == [(0, 1), (0, 2), (0, 3)]

    def test_a_rescue_claims_only_another_owners_expired_shard(self, store: SqliteLeaseStore) -> None:
        """``expired_only``: no free shard, no unexpired one, not the claimer's own; then the dead owner's, token up."""
        assert store.claim("b", "w2", now=0.0, lease_s=1.0, expired_only=True) is None  # both shards free
        dead = store.claim("b", "dead", now=0.0, lease_s=1.0)
        own = store.claim("b", "w2", now=0.0, lease_s=1.0)
        assert dead is not None and own is not None
        assert store.claim("b", "w2", now=0.5, lease_s=1.0, expired_only=True) is None  # not expired yet
        rescue = store.claim("b", "w2", now=5.0, lease_s=1.0, expired_only=True)
        assert rescue is not None and (rescue.shard, rescue.token) == (dead.shard, dead.token + 1), rescue
        assert store.claim("b", "w2", now=9.0, lease_s=1.0, expired_only=True) is None  # its own, though expired
        assert [s.owner for s in store.shards("b")] == ["w2", "w2"]

    def test_the_heaviest_free_shard_is_claimed_first_but_an_expired_one_before_it(self, tmp_path: Path) -> None:
        """Free shards go heaviest first (then by number); a held shard that expired still goes before them."""
        store = SqliteLeaseStore(tmp_path / "sink.sqlite")
        store.create_shards("w", 4, [5.0, 9.0, 1.0, 9.0])
        first = store.claim("w", "a", now=0.0, lease_s=1.0)
        assert first is not None and first.shard == 1
        second = store.claim("w", "b", now=5.0, lease_s=1.0)  # shard 1's lease expired at 1.0
        assert second is not None and second.shard == 1 and second.token == 2
        order = [store.claim("w", "c", now=5.0, lease_s=10.0) for _ in range(3)]
        assert [lease.shard for lease in order if lease] == [3, 0, 2]

    def test_a_lease_table_made_before_weights_gets_the_column_and_keeps_its_order(self, tmp_path: Path) -> None:
        """A sink file whose lease table has no weight column is migrated when opened; its shards claim in order."""
        path = tmp_path / "sink.sqlite"
        old = sqlite3.connect(path)
        old.execute("CREATE TABLE leases (batch_id TEXT NOT NULL, shard INTEGER NOT NULL, n_shards INTEGER NOT NULL, "
                    "state TEXT NOT NULL DEFAULT 'free', owner TEXT, token INTEGER NOT NULL DEFAULT 0, "
                    "expires_at REAL NOT NULL DEFAULT 0, claims INTEGER NOT NULL DEFAULT 0, "
                    "PRIMARY KEY (batch_id, shard))")
        old.executemany("INSERT INTO leases (batch_id, shard, n_shards) VALUES ('o', ?, 2)", [(0,), (1,)])
        old.commit()
        old.close()
        store = SqliteLeaseStore(path)
        claims = [store.claim("o", "w", now=0.0, lease_s=1.0) for _ in range(2)]
        assert [lease.shard for lease in claims if lease] == [0, 1]

    def test_another_shard_count_for_the_same_batch_is_refused(self, store: SqliteLeaseStore) -> None:
        """create_shards is idempotent for the same count and refuses a different one."""
        store.create_shards("b", 2)
        with pytest.raises(LeaseError):
            store.create_shards("b", 3)


class TestRenewFinishCheck:
    def test_a_lease_taken_over_can_neither_renew_nor_finish_nor_pass_the_fence(self, store: SqliteLeaseStore) -> None:
        """After a takeover the old lease's renew, finish and check all fail; the new holder's succeed."""
        old = store.claim("b", "w1", now=0.0, lease_s=1.0)
        store.claim("b", "w2", now=0.0, lease_s=100.0)
        assert old is not None
        new = store.claim("b", "w3", now=2.0, lease_s=1.0)
        assert new is not None and new.shard == old.shard and new.token == old.token + 1
        assert not store.renew(old, now=2.1, lease_s=1.0)
        assert not store.check(old, now=2.1)
        assert not store.finish(old)
        assert store.check(new, now=2.1) and store.finish(new)
        assert [s.state for s in store.shards("b")][new.shard] == "done"

    def test_an_expired_lease_fails_the_fence_but_may_be_renewed_while_untaken(self, store: SqliteLeaseStore) -> None:
        """Past its expiry a lease fails check; nobody took it, so renew revives it (its token still fences)."""
        lease = store.claim("b", "w1", now=0.0, lease_s=1.0)
        assert lease is not None
        assert store.check(lease, now=0.5) and not store.check(lease, now=1.0)
        assert store.renew(lease, now=1.2, lease_s=1.0) and store.check(lease, now=1.5)

    def test_release_gives_the_shard_back_for_the_next_claim(self, store: SqliteLeaseStore) -> None:
        """A released shard is free again and its next claim has a higher token."""
        lease = store.claim("b", "w1", now=0.0, lease_s=100.0)
        assert lease is not None and store.release(lease)
        assert store.shards("b")[lease.shard].state == FREE
        again = store.claim("b", "w2", now=0.0, lease_s=100.0)
        assert again is not None and again.shard == lease.shard and again.token == lease.token + 1
        assert store.shards("b")[lease.shard].state == HELD


class TestFence:
    def test_a_stale_token_put_is_refused_and_rolled_back_a_current_one_commits(
            self, tmp_path: Path, store: SqliteLeaseStore) -> None:
        """The sink's guard refuses a put under a token that moved on: no output, no put; the new holder commits."""
        store.create_shards("one", 1)
        old = store.claim("one", "w1", now=0.0, lease_s=1.0)
        new = store.claim("one", "w2", now=5.0, lease_s=100.0)
        assert old is not None and new is not None and new.token == old.token + 1
        doc = Document(id="d1", content="hello")
        stale_sink = SqliteSink(tmp_path / "sink.sqlite", guard=store.fence(old, lambda: 5.1))
        with pytest.raises(StaleLease):
            stale_sink.put("k1", doc, ["hello"], [[0.1]])
        assert "k1" not in stale_sink
        good = SqliteSink(tmp_path / "sink.sqlite", guard=store.fence(new, lambda: 5.1))
        assert good.put("k1", doc, ["hello"], [[0.1]]) == 1
        rows = store._conn.execute("SELECT key, owner, token FROM fenced_puts").fetchall()
        assert rows == [("k1", "w2", new.token)]


_RACER = """
import sys
from batchlab.leases import SqliteLeaseStore
s = SqliteLeaseStore(sys.argv[1])
got = []
while (lease := s.claim("race", sys.argv[2], now=0.0, lease_s=1000.0)) is not None:
    got.append(f"{lease.shard}:{lease.token}")
print(" ".join(got))
"""


def test_two_processes_racing_to_claim_never_get_the_same_shard(tmp_path: Path) -> None:
    """Two processes claiming 60 shards as fast as they can: every shard claimed once, by one of them, token 1."""
    path = tmp_path / "sink.sqlite"
    SqliteLeaseStore(path).create_shards("race", 60)
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, str(path), f"p{i}"], stdout=subprocess.PIPE, text=True)
             for i in range(2)]
    claims = [c for p in procs for c in p.communicate(timeout=120)[0].split()]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(claims) == sorted(f"{i}:1" for i in range(60))
