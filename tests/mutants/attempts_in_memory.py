"""``attempts`` counted in memory: the store keeps its own counter per key, so after a reopen (a
crash and a resume) the next attempt is number 1 again instead of going on from the checkpoint.
"""

REPLACEMENTS = [
    ("""            "last_error TEXT, updated_at REAL NOT NULL, PRIMARY KEY (batch_id, shard, key)) WITHOUT ROWID"
        )  # WITHOUT ROWID: one B-tree keyed by the primary key, so a transition writes one tree, not a table and its index
""", """            "last_error TEXT, updated_at REAL NOT NULL, PRIMARY KEY (batch_id, shard, key)) WITHOUT ROWID"
        )  # WITHOUT ROWID: one B-tree keyed by the primary key, so a transition writes one tree, not a table and its index
        self._attempts: Counter[str] = Counter()  # attempts of this process
"""),
    ("""            attempts=(old.attempts if old else 0) + (1 if state == PROCESSING else 0),
""", """            attempts=self._attempts.update([key] if state == PROCESSING else []) or self._attempts[key],
"""),
]
LOSES = {"test_attempts_and_last_error_recorded"}
MAY_LOSE = {"test_survives_sigkill_during_writes"}
SCENARIO_CHECKS: set[str] = set()
MESSAGE = r"attempts-persisted"
