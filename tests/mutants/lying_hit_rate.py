"""A checkpoint hit rate that lies: it counts only the keys the checkpoint said were finished (``skipped``) and
forgets those found committed in the sink (``recovered``), so a resume after a kill right after a commit reports
fewer hits than it had.
"""

REPLACEMENTS = [
    ("    report.checkpoint_hit_rate = (report.skipped + report.recovered) / report.unique if report.unique else 0.0\n",
     "    report.checkpoint_hit_rate = report.skipped / report.unique if report.unique else 0.0  # sink hits forgotten\n"),
]
LOSES = {"test_report_hit_rate_agrees_with_ledger", "test_scenario[crash_after_commit]", "test_scenario[checkpoint_lost]",
         "test_scenario[duplicates_in_input]"}
# The harness side kills the worker from outside, at whatever it is doing, so a resume after any planned kill can
# find documents committed in the sink but not marked (recovered): the lie then shows there too.
MAY_LOSE = {f"test_scenario[{name}]" for name in (
    "random_kills", "transient_faults", "crash_during_call", "permanent_and_invalid", "backfill_degraded",
    "large_batch")}
SCENARIO_CHECKS = {"report agrees with ledger"}
MESSAGE = r"checkpoint_hit_rate: report says [\d.]+ %, ledger says [\d.]+ %.*\n?.*hit-rate-counts-checkpoint-and-sink"
