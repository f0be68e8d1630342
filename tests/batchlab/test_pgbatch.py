"""Starting a batch in PostgreSQL and joining it from elsewhere with only the URL, the batch id and an impl."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from pgserver import need_psycopg

need_psycopg()

from batchlab.batchstream import open_batch
from batchlab.errors import KitError
from batchlab.examples import make_documents, write_input
from batchlab.faults import FaultPlan
from batchlab.pgbatch import join_batch, publish_batch
from batchlab.pgleases import PgLeaseStore
from batchlab.pgstore import PgConnection, load_documents
from batchlab.runspec import RunSpec, read_spec
from batchlab.shardpass import InputCache
from batchlab.worker import INPUT_CHECKED


def spec_of(tmp_path: Path) -> RunSpec:
    source = write_input(tmp_path / "in.json", make_documents(9, seed=3, min_bytes=100, max_bytes=300))
    return RunSpec(impl=tmp_path / "starter.py", input=source, run_dir=tmp_path / "run", batch_id="b-9",
                   plan=FaultPlan(seed=7, transient_rate=0.04))


def test_a_joining_worker_gets_the_batch_and_the_spec_with_its_own_impl(pg_db: str, tmp_path: Path) -> None:
    """The joiner's folder is a run directory: the same entries, the starter's fault plan, the joiner's impl."""
    spec = spec_of(tmp_path)
    db = PgConnection(pg_db)
    assert publish_batch(db, spec, shards=3) == 9
    assert [s.shard for s in PgLeaseStore(db).shards("b-9")] == [0, 1, 2]
    joined = join_batch(PgConnection(pg_db), "b-9", tmp_path / "mine.py", tmp_path / "elsewhere")
    assert read_spec(tmp_path / "elsewhere") == joined
    assert joined.impl == (tmp_path / "mine.py").resolve() and joined.plan == spec.plan and joined.batch_id == "b-9"
    assert joined.input.parent == (tmp_path / "elsewhere").resolve()
    stream = open_batch(joined.input)
    assert list(stream) == list(open_batch(spec.input)) and stream.header.batch_id == "b-9"


def test_a_worker_joining_early_waits_for_the_load_to_finish(pg_db: str, tmp_path: Path) -> None:
    """A batch still loading is waited for (the load ends while the joiner waits), not joined half-loaded."""
    spec = spec_of(tmp_path)
    db = PgConnection(pg_db)
    db.transact(lambda c: c.execute(
        "INSERT INTO batches (batch_id, created_at) VALUES ('b-9', 0)"))  # loading: loaded is false
    waits: list[float] = []

    def sleep(s: float) -> None:
        waits.append(s)
        if len(waits) == 2:
            thread = threading.Thread(target=publish_batch, args=(PgConnection(pg_db), spec), kwargs={"shards": 2})
            thread.start()
            thread.join()

    joined = join_batch(db, "b-9", tmp_path / "mine.py", tmp_path / "w", sleep=sleep)
    assert len(waits) == 2 and len(list(open_batch(joined.input))) == 9


def test_no_such_batch_is_batch_not_found_after_the_wait(pg_db: str, tmp_path: Path) -> None:
    """A batch that never appears gives ``batch_not_found`` once the wait is over."""
    db = PgConnection(pg_db)
    load_documents(db, "other", [{"id": "x", "content": "y"}])
    now = iter(range(100))
    with pytest.raises(KitError) as info:
        join_batch(db, "b-9", tmp_path / "mine.py", tmp_path / "w", wait_s=3, sleep=lambda s: None,
                   clock=lambda: float(next(now)))
    assert info.value.code == "batch_not_found" and not (tmp_path / "w").exists()


def test_a_joined_input_is_the_stores_text_and_its_memo_spares_the_runner_a_read(pg_db: str, tmp_path: Path) -> None:
    """The local input holds the store's entries line for line (unparsed), and the memo written beside it names this
    very file, so a pass runner trusts it (its header, no validation); a file changed after the join is not trusted."""
    db = PgConnection(pg_db)
    publish_batch(db, spec_of(tmp_path), shards=2)
    joined = join_batch(db, "b-9", tmp_path / "mine.py", tmp_path / "w")
    assert list(open_batch(joined.input)) == list(open_batch(spec_of(tmp_path).input))
    cache = InputCache(tmp_path / "w" / INPUT_CHECKED)
    header = cache._from_memo(joined.input, os.stat(joined.input))
    assert header is not None and header.documents == 9 and header.batch_id == "b-9"
    with open(joined.input, "a", encoding="utf-8") as fh:
        fh.write("\n")
    assert cache._from_memo(joined.input, os.stat(joined.input)) is None
