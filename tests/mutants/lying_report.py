"""A report that lies: invalid documents are left out of ``rejected``, so the fail rate looks better than it is."""

REPLACEMENTS = [
    ("    run.report.rejected += 1\n", "    pass  # invalid documents hidden from the report\n"),
]
LOSES = {"test_report_state_counts_agree_with_ledger", "test_report_rates_agree_with_ledger",
         *(f"test_scenario[{name}]" for name in (
             "clean_run", "transient_faults", "crash_during_call", "crash_after_commit", "random_kills",
             "duplicates_in_input", "permanent_and_invalid", "backfill_degraded", "bad_batch_input", "outage", "stuck_calls",
        "large_batch"))}
LOSES |= {"test_scenario[checkpoint_lost]"}  # the recovery-order scenario (issue 10, item 6)
MAY_LOSE: set[str] = set()
SCENARIO_CHECKS = {"report agrees with ledger"}
MESSAGE = r"rejected: report says 0, ledger says \d+"
