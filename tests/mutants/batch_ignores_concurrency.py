"""The batch ignores ``config.concurrency``: ``run_bounded`` is right, but the batch hands it no real limit."""

REPLACEMENTS = [
    ("        await run_bounded(work_left(), run_one, limit=config.concurrency)\n",
     "        await run_bounded(work_left(), run_one, limit=1_000_000)\n"),
]
LOSES = {"test_batch_keeps_to_config_concurrency"}
MAY_LOSE: set[str] = set()
SCENARIO_CHECKS: set[str] = set()
MESSAGE = r"process_documents_batch had \d+ documents started and not yet committed at once > config.concurrency"
