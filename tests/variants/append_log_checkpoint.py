"""A correct checkpoint in another style: an append-only log of JSON lines, compacted atomically on open.

Each transition appends one short line with one ``os.write`` (``O_APPEND``), so its
cost does not depend on the size of the checkpoint and a SIGKILL cannot tear an
acknowledged line. Opening the store replays the log (a torn last line, which can
only be one that was never acknowledged, is dropped) and rewrites it compacted,
one line per key, through a temporary file and ``os.replace`` (docs/design.md, Traps:
"an append-only log with atomic compaction"). It must earn full marks.
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
''', '''        import dataclasses
        import json
        import os

        self.path = Path(state_dir) / f"checkpoint_{batch_id}.{self.shard or '_'}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._entries: dict[str, CheckpointEntry] = {}
        if self.path.exists():
            with open(self.path, "rb") as log:
                for line in log:
                    if not line.endswith(b"\\n"):
                        break  # torn by a kill mid-write: never acknowledged
                    record = json.loads(line)
                    self._entries[record["key"]] = CheckpointEntry(**record)
        compacted = "".join(json.dumps(dataclasses.asdict(e)) + "\\n" for e in self._entries.values())
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(compacted, encoding="utf-8")
        os.replace(tmp, self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
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

        os.write(self._fd, (json.dumps(dataclasses.asdict(entry)) + "\\n").encode("utf-8"))  # one short append
        self._entries[key] = entry
'''),
    ('''        # BEGIN SOLUTION step 01: close the database
        self._conn.close()
''', '''        # BEGIN SOLUTION step 01: close the database
        import os

        os.close(self._fd)
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
#: Graded like a submission: every public test and every hidden scenario.
GRADER_ARGS = ["--hidden"]
