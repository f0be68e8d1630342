"""``degraded`` stored as ``done``: the batch writes every commit to the checkpoint as ``done``, so a
later backfill cannot find the degraded documents (and the report, counted from the checkpoint,
says none degraded). One-line change of the reference.
"""

REPLACEMENTS = [
    ("        run.store.transition(key, state, error=result.error)\n",
     "        run.store.transition(key, DONE, error=result.error)  # degraded is a kind of done, isn't it?\n"),
]
LOSES = {"test_checkpoint_states_match_the_sink", "test_report_state_counts_agree_with_ledger",
         "test_scenario[permanent_and_invalid]",
         "test_scenario[backfill_degraded]"}
MAY_LOSE: set[str] = set()
SCENARIO_CHECKS = {"report agrees with ledger", "backfill"}
MESSAGE = r"degraded-is-not-done"
