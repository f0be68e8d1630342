"""One checkpoint shared by every batch id and shard: rows are written with their batch and shard,
but the store loads every row of the file, so a second batch (or shard) in the same ``state_dir``
sees, and skips, what another finished.
"""

REPLACEMENTS = [
    ('''            "SELECT key, doc_id, state, attempts, last_error, updated_at FROM checkpoint "
            "WHERE batch_id = ? AND shard = ?",
            (self.batch_id, self.shard),
''', '''            "SELECT key, doc_id, state, attempts, last_error, updated_at FROM checkpoint",
'''),
    ('''        self.path = Path(state_dir) / f"checkpoint_{batch_id}.sqlite"
''', '''        self.path = Path(state_dir) / "checkpoint.sqlite"
'''),
]
LOSES = {"test_batches_and_shards_do_not_share_a_checkpoint"}
MAY_LOSE: set[str] = set()
SCENARIO_CHECKS: set[str] = set()
MESSAGE = r"checkpoint-per-batch-and-shard"
