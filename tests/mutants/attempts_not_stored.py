"""``attempts`` not persisted, in another style: the row keeps state and error but the attempts
column is written as 0 and the count lives only in the in-memory entries.
"""

REPLACEMENTS = [
    ("""            (self.batch_id, self.shard, key, entry.doc_id, entry.state, entry.attempts, entry.last_error,
             entry.updated_at),""", """            (self.batch_id, self.shard, key, entry.doc_id, entry.state, 0, entry.last_error,
             entry.updated_at),"""),
]
LOSES = {"test_round_trip_across_reopen", "test_attempts_and_last_error_recorded", "test_survives_sigkill_during_writes"}
MAY_LOSE: set[str] = set()
SCENARIO_CHECKS: set[str] = set()
MESSAGE = r"attempts"
