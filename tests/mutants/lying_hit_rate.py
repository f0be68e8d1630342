"""A checkpoint hit rate that lies: it counts only the keys the checkpoint said were finished (``skipped``) and
forgets those found committed in the sink (``recovered``), so a resume after a kill right after a commit reports
fewer hits than it had.

Like most students' code it does not group its checkpoint marks (组提交): under the reference's group every kill
leaves documents to heal from the sink, which would expose the bug in scenarios beyond those listed below.
"""

REPLACEMENTS = [
    ("        with grouped(run.store, config.shard) as run.group:  # marks the sink heals, committed in groups\n",
     "        with MarkGroup(None) as run.group:  # no group commit: every mark durable when it returns\n"),
    ("    report.checkpoint_hit_rate = (report.skipped + report.recovered) / report.unique if report.unique else 0.0\n",
     "    report.checkpoint_hit_rate = report.skipped / report.unique if report.unique else 0.0  # sink hits forgotten\n"),
]
LOSES = {"test_report_hit_rate_agrees_with_ledger", "test_scenario[crash_after_commit]", "test_scenario[checkpoint_lost]",
         "test_scenario[duplicates_in_input]"}
# A random kill (seeded in time) can land where the resume then finds documents committed in the sink but not
# marked (recovered): the lie shows there too. Planned kills land at the crash point every run: no variation.
MAY_LOSE = {"test_scenario[random_kills]"}
SCENARIO_CHECKS = {"report agrees with ledger"}
MESSAGE = r"checkpoint_hit_rate: report says [\d.]+ %, ledger says [\d.]+ %.*\n?.*hit-rate-counts-checkpoint-and-sink"
