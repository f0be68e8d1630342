"""The batch ignores ``config.concurrency``: ``run_bounded`` is right, but the batch hands it no real limit."""

REPLACEMENTS = [
    ("        await run_bounded(work_left(), run_one, limit=config.concurrency)\n",
     "        await run_bounded(work_left(), run_one, limit=1_000_000)\n"),
]
LOSES = {"test_batch_keeps_to_config_concurrency", "test_scenario[outage]"}
MAY_LOSE: set[str] = set()
#: Every document at once: the calls in flight when the outage begins exceed what a breaker can stop.
SCENARIO_CHECKS = {"breaker in outage"}
MESSAGE = r"process_documents_batch had \d+ documents started and not yet committed at once > config.concurrency"
