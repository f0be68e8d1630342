"""A correct processor with plain JSON files: one small file per key, replaced atomically.

The checkpoint of ``(batch_id, shard)`` is a folder ``state_dir/ckpt-{batch_id}-{shard}/``; each
transition writes ``<sha256(key)>.json`` to a temporary file and ``os.replace``s it, so a SIGKILL
leaves the old or the new file, and one transition costs one small file however many there are (no
whole-checkpoint rewrite). Opening the store reads every file (leftover ``.tmp`` files are never
acknowledged transitions and are ignored). It must earn every point, public and hidden.
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

        self.path = Path(state_dir) / f"ckpt-{batch_id}-{self.shard or '_'}"
        self.path.mkdir(parents=True, exist_ok=True)
        self._entries: dict[str, CheckpointEntry] = {}
        for file in self.path.glob("*.json"):
            record = json.loads(file.read_text(encoding="utf-8"))
            self._entries[record["key"]] = CheckpointEntry(**record)
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

        final = self.path / f"{hashlib.sha256(key.encode('utf-8')).hexdigest()}.json"
        tmp = final.with_suffix(".tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(entry)), encoding="utf-8")
        os.replace(tmp, final)  # atomic: the old file or the new one, never a torn one
        self._entries[key] = entry
'''),
    ('''        # BEGIN SOLUTION step 01: close the database
        self._conn.close()
''', '''        # BEGIN SOLUTION step 01: close the database
        self._entries = dict(self._entries)
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
GRADER_ARGS = ["--hidden"]
