"""Backfill ignored: ``config.backfill`` is never looked at, so a backfill pass skips the degraded documents like
any other committed key, and they stay degraded after the service is healthy again (后续标记待补 never happens).
"""

REPLACEMENTS = [
    ("    if wants_backfill(run, key, entry):\n", "    if False:  # config.backfill ignored: degraded keys are skipped\n"),
]
LOSES = {"test_scenario[backfill_degraded]"}
MAY_LOSE: set[str] = set()
SCENARIO_CHECKS = {"backfill"}
MESSAGE = r"backfill: \d+ of \d+ degraded documents are still not committed full.*backfill-redoes-degraded"
