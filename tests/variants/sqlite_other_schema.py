"""A correct processor with SQLite in another schema and another key format.

One database for every batch in ``state_dir`` (``checkpoints.db``), a table keyed by the namespace
``checkpoint:{batch_id}:{shard}`` and the key, states stored as small integers, attempts counted in
SQL (``attempts = attempts + 1``) in one ``UPSERT`` per transition. The idempotency key is
``layer:sha256(json([source, normalized id, content hash]))``: opaque, fixed length, still stable,
normalized and sensitive to each part. It must earn every point, public and hidden.
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
''', '''        self._codes = {PENDING: 0, PROCESSING: 1, DONE: 2, DEGRADED: 3, FAILED: 4}
        self._names = {v: k for k, v in self._codes.items()}
        self._ns = f"checkpoint:{batch_id}:{self.shard}"
        self.path = Path(state_dir) / "checkpoints.db"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(self.path), isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("CREATE TABLE IF NOT EXISTS ckpt (ns TEXT, k TEXT, doc TEXT, st INTEGER, "
                           "n INTEGER DEFAULT 0, err TEXT, ts REAL, PRIMARY KEY (ns, k)) WITHOUT ROWID")
        self._entries: dict[str, CheckpointEntry] = {
            k: CheckpointEntry(k, doc, self._names[st], n, err, ts)
            for k, doc, st, n, err, ts in self._conn.execute(
                "SELECT k, doc, st, n, err, ts FROM ckpt WHERE ns = ?", (self._ns,))}
'''),
    ('''        self._conn.execute(
            "INSERT OR REPLACE INTO checkpoint (batch_id, shard, key, doc_id, state, attempts, last_error, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (self.batch_id, self.shard, key, entry.doc_id, entry.state, entry.attempts, entry.last_error,
             entry.updated_at),
        )
''', '''        row = self._conn.execute(
            "INSERT INTO ckpt (ns, k, doc, st, n, err, ts) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (ns, k) DO UPDATE SET doc = excluded.doc, st = excluded.st, "
            "n = ckpt.n + (excluded.st = 1), err = COALESCE(excluded.err, ckpt.err), ts = excluded.ts "
            "RETURNING n",
            (self._ns, key, entry.doc_id, self._codes[state], 1 if state == PROCESSING else 0, error,
             entry.updated_at),
        ).fetchone()
        entry = CheckpointEntry(entry.key, entry.doc_id, entry.state, int(row[0]), entry.last_error, entry.updated_at)
        self._entries[key] = entry
'''),
    ('''    normalized_id = doc.id.strip().casefold()
    text = " ".join(unicodedata.normalize("NFC", doc.content).split())
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return "|".join(_escape(p) for p in (doc.source, normalized_id, digest, layer))
''', '''    import json

    normalized_id = doc.id.strip().casefold()
    text = " ".join(unicodedata.normalize("NFC", doc.content).split())
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    name = hashlib.sha256(json.dumps([doc.source, normalized_id, digest]).encode("utf-8")).hexdigest()
    return f"{layer}:{name}"
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
