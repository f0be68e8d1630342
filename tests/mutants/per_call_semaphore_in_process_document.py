"""Concurrency bounded per call, in another style: ``process_document`` takes a module-level semaphore
around each service call, and the batch gathers every document at once.
"""

REPLACEMENTS = [
    ("""            async with asyncio.timeout(config.call_timeout or None):
                return await service.embed(doc, index, chunk)
""", """            async with _call_slots(config.concurrency), asyncio.timeout(config.call_timeout or None):
                return await service.embed(doc, index, chunk)
"""),
    ("""async def run_bounded(""", """_SLOTS: dict[tuple[int, int], asyncio.Semaphore] = {}


def _call_slots(limit: int) -> asyncio.Semaphore:
    loop_id = id(asyncio.get_running_loop())
    return _SLOTS.setdefault((loop_id, limit), asyncio.Semaphore(limit))


async def run_bounded("""),
    ("        await run_bounded(work_left(), run_one, limit=config.concurrency)\n",
     "        await asyncio.gather(*(run_one(item) for item in list(work_left())))\n"),
]
LOSES = {"test_batch_keeps_to_config_concurrency"}
MAY_LOSE = {"test_scenario[outage]", "test_scenario[stuck_calls]"}  # every document at once: the outage bound,
# and calls that wait for a slot behind stuck ones
SCENARIO_CHECKS: set[str] = set()
MESSAGE = r"concurrency-per-document"
