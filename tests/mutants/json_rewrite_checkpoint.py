"""The checkpoint hot spot: the whole checkpoint rewritten as one JSON file on every transition.

Atomically (a temporary file, then ``os.replace``), so a SIGKILL never tears it and
every other check passes; but each transition costs the whole checkpoint, so one
update with 20 000 entries costs a hundred times one with 100 (docs/design.md, Traps:
LlamaIndex spends 92 % of a run rewriting its JSON stores). Only the hot-spot
check may notice.
"""

REPLACEMENTS = [
    ('''        self.path = Path(state_dir) / f"checkpoint_{batch_id}.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(self.path), isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS checkpoint (batch_id TEXT NOT NULL, shard TEXT NOT NULL, "
            "key TEXT NOT NULL, doc_id TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL, "
            "last_error TEXT, updated_at REAL NOT NULL, PRIMARY KEY (batch_id, shard, key)) WITHOUT ROWID"
        )  # WITHOUT ROWID: one B-tree keyed by the primary key, so a transition writes one tree, not a table and its index
''', '''        import json

        self.path = Path(state_dir) / f"checkpoint_{batch_id}.{self.shard or 'all'}.json"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._entries: dict[str, CheckpointEntry] = {}
        if self.path.exists():
            data = json.loads(self.path.read_text(encoding="utf-8"))
            self._entries = {k: CheckpointEntry(**v) for k, v in data.items()}
'''),
    ('''        self._conn.execute(
            "INSERT OR REPLACE INTO checkpoint (batch_id, shard, key, doc_id, state, attempts, last_error, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (self.batch_id, self.shard, key, entry.doc_id, entry.state, entry.attempts, entry.last_error,
             entry.updated_at),
        )
''', '''        import dataclasses
        import json
        import os

        entries = {**self._entries, key: entry}
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({k: dataclasses.asdict(v) for k, v in entries.items()}), encoding="utf-8")
        os.replace(tmp, self.path)  # atomic: never torn, but the whole checkpoint per transition
        self._entries = entries
'''),
    ('''        # BEGIN SOLUTION step 01: close the database
        self._conn.close()
''', '''        # BEGIN SOLUTION step 01: close the database
        pass
'''),
]

# The reference reads its entries from disk (issue 17); this store keeps them in memory, so its reads do too.
REPLACEMENTS += [
    ("""        row = self._conn.execute(
            "SELECT key, doc_id, state, attempts, last_error, updated_at FROM checkpoint "
            "WHERE batch_id = ? AND shard = ? AND key = ?",
            (self.batch_id, self.shard, key),
        ).fetchone()
        return None if row is None else CheckpointEntry(*row)
""", "        return self._entries.get(key)\n"),
    ("""        rows = self._conn.execute(
            "SELECT key, doc_id, state, attempts, last_error, updated_at FROM checkpoint "
            "WHERE batch_id = ? AND shard = ?",
            (self.batch_id, self.shard),
        )
        return {row[0]: CheckpointEntry(*row) for row in rows}
""", "        return dict(self._entries)\n"),
]
LOSES = {"test_transition_cost_does_not_grow_with_the_checkpoint"}
MAY_LOSE: set[str] = set()
SCENARIO_CHECKS: set[str] = set()
MESSAGE = r"checkpoint-hot-spot: .*\n检查点热点（checkpoint hot spot）"
