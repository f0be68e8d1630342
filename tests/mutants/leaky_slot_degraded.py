"""A concurrency slot leaks on the degraded path: the batch takes and gives back its own slots, but a
degraded document returns early without giving its slot back. Once ``config.concurrency`` documents
have degraded in one pass, no document can start: the pass stalls.
"""

REPLACEMENTS = [
    ("""    async def run_one(item: tuple[str, Document]) -> None:
        await run_document(run, *item)
        finish_document(run, item[0])
""", """    slots = asyncio.Semaphore(config.concurrency)

    async def run_one(item: tuple[str, Document]) -> None:
        await slots.acquire()
        state = await run_document(run, *item)
        finish_document(run, item[0])  # counted like every other document: only the slot leaks
        if state == DEGRADED:
            return  # the slot is never released on this path
        slots.release()
"""),
    ("        await run_bounded(work_left(), run_one, limit=config.concurrency)\n",
     "        await run_bounded(work_left(), run_one, limit=config.concurrency + 1)\n"),
]
LOSES = {"test_scenario[permanent_and_invalid]"}
MAY_LOSE: set[str] = set()
SCENARIO_CHECKS = {"not scored"}
MESSAGE = r"stalled: .*\n?slot-released-on-every-path"
