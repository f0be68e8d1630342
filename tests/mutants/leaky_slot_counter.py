"""A concurrency slot leaks on the degraded path, in another style: a hand-written in-flight counter
under an ``asyncio.Condition``; the degraded branch forgets to decrement it, so the batch stalls once
``config.concurrency`` documents have degraded in one pass.
"""

REPLACEMENTS = [
    ("""    async def run_one(item: tuple[str, Document]) -> None:
        await run_document(run, *item)
""", """    in_flight = 0
    room = asyncio.Condition()

    async def run_one(item: tuple[str, Document]) -> None:
        nonlocal in_flight
        async with room:
            await room.wait_for(lambda: in_flight < config.concurrency)
            in_flight += 1
        state = await run_document(run, *item)
        if state != DEGRADED:  # forgot the degraded documents
            async with room:
                in_flight -= 1
                room.notify()
"""),
    ("        await run_bounded(work_left(), run_one, limit=config.concurrency)\n",
     "        await asyncio.gather(*(run_one(item) for item in work_left()))\n"),
]
LOSES = {"test_scenario[permanent_and_invalid]"}
MAY_LOSE: set[str] = set()
SCENARIO_CHECKS = {"not scored"}
MESSAGE = r"slot-released-on-every-path"
