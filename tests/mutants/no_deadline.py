"""No per-call deadline: a call that never returns holds its concurrency slot forever, and the batch stalls."""

REPLACEMENTS = [
    ("            async with asyncio.timeout(config.call_timeout or None):\n",
     "            if True:  # no deadline\n"),
]
LOSES = {"test_stuck_call_is_cancelled_and_retried", "test_scenario[stuck_calls]"}
MAY_LOSE: set[str] = set()
SCENARIO_CHECKS = {"not scored"}  # the pass hangs on its stuck calls until its timeout
MESSAGE = r"call-deadline: .*doc-00001"
GRADER_ARGS = ["--timeout-scale", "0.5"]  # the hung pass waits, it uses no CPU
