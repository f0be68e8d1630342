"""Concurrency bounded per call, not per document: the batch wraps the service in a semaphore of
``config.concurrency`` calls and starts every document at once (all ``processing``, all in memory).
"""

REPLACEMENTS = [
    ("            await run_bounded(work_left(), run_one, limit=config.concurrency)\n",
     """            calls = asyncio.Semaphore(config.concurrency)
            real_embed = service.embed

            async def bounded_embed(doc: Document, index: int, text: str) -> list[float]:
                async with calls:  # at most config.concurrency calls in flight
                    return await real_embed(doc, index, text)

            service.embed = bounded_embed
            await run_bounded(work_left(), run_one, limit=max(len(documents), 1))
"""),
]
LOSES = {"test_batch_keeps_to_config_concurrency"}
MAY_LOSE = {"test_scenario[outage]", "test_scenario[stuck_calls]"}  # every document at once: the outage bound,
# and the deadline also times the wait for a call slot behind stuck calls
SCENARIO_CHECKS: set[str] = set()
MESSAGE = r"documents started and not yet committed at once > config.concurrency.*\n?concurrency-per-document"
