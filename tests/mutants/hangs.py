"""A submission that hangs: ``process_documents_batch`` waits forever (no CPU used, so only the timeout ends it).

Everything that runs the batch (steps 05-06 and the scenarios) loses its points;
steps 01-04 (the checkpoint store, the key, the retry policy, ``process_document``
and ``run_bounded``) never call the batch and still earn theirs. Graded with short
timeouts to keep the test fast.
"""

REPLACEMENTS = [
    ("    # BEGIN SOLUTION step 05: open the checkpoint (and the input positions), run_bounded the work left (from the global offset when it still holds), tally, report\n",
     "    # BEGIN SOLUTION step 05: open the checkpoint (and the input positions), run_bounded the work left (from the global offset when it still holds), tally, report\n"
     "    await asyncio.Event().wait()  # hangs forever\n"),
]
LOSES = {
    "test_resume_skips_committed_keys", "test_batch_keeps_to_config_concurrency", "test_resume_redoes_work_killed_before_its_sink_write",
    "test_resume_trusts_the_sink_after_a_kill_after_commit", "test_report_state_counts_agree_with_ledger",
    "test_report_rates_agree_with_ledger", "test_report_run_figures_agree_with_ledger",
    # every step-05/06 test that runs the batch
    "test_checkpoint_states_match_the_sink", "test_poison_document_does_not_stop_the_batch",
    "test_progress_reports_every_outcome", "test_report_resume_figures_agree_with_ledger",
    "test_report_hit_rate_agrees_with_ledger",
    *(f"test_scenario[{name}]" for name in (
        "clean_run", "transient_faults", "crash_during_call", "crash_after_commit", "random_kills",
        "duplicates_in_input", "permanent_and_invalid", "backfill_degraded", "bad_batch_input", "outage", "stuck_calls",
        "large_batch")),
}
LOSES |= {"test_scenario[checkpoint_lost]", "test_shards_partition_the_batch"}  # issue 10, items 5-6
MAY_LOSE: set[str] = set()
SCENARIO_CHECKS = {"not scored"}  # every scenario times out before it can be scored
MESSAGE = r"a hang or an endless loop"
GRADER_ARGS = ["--timeout-scale", "0.15", "--jobs", "6"]  # hung children wait, they use no CPU
