"""``degraded`` stored as ``done``, in another place: the checkpoint store itself writes ``degraded``
as ``done`` (one row state for "finished"), so every reader of the checkpoint loses the difference.
"""

REPLACEMENTS = [
    ("""        entry = CheckpointEntry(
            key=key,
            doc_id=doc_id or (old.doc_id if old else ""),
            state=state,
""", """        entry = CheckpointEntry(
            key=key,
            doc_id=doc_id or (old.doc_id if old else ""),
            state=DONE if state == DEGRADED else state,  # finished is finished
"""),
]
LOSES = {"test_round_trip_across_reopen", "test_attempts_and_last_error_recorded",
         "test_batches_and_shards_do_not_share_a_checkpoint", "test_checkpoint_states_match_the_sink",
         "test_report_state_counts_agree_with_ledger", "test_scenario[permanent_and_invalid]",
         "test_scenario[backfill_degraded]"}
MAY_LOSE: set[str] = set()
SCENARIO_CHECKS = {"report agrees with ledger", "backfill"}
MESSAGE = r"degraded-is-not-done"
