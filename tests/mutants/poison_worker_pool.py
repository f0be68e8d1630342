"""A poison document aborts the batch, in another style: a pool of worker tasks over a queue, gathered.

Each worker takes documents from an ``asyncio.Queue``; a document's errors are handled only
when they are service errors, so the unexpected ``ValueError`` of one poison document ends its
worker and ``asyncio.gather`` raises it out of the batch.
"""

REPLACEMENTS = [
    ("    except Exception as exc:  # a poison document must not stop the batch\n",
     "    except (PermanentServiceError, TransientServiceError, OSError) as exc:\n"),
    ("            await run_bounded(work_left(), run_one, limit=config.concurrency)\n",
     """            queue: asyncio.Queue[tuple[str, Document] | None] = asyncio.Queue(maxsize=config.concurrency)

            async def feeder() -> None:
                for item in work_left():
                    await queue.put(item)
                for _ in range(config.concurrency):
                    await queue.put(None)

            async def worker() -> None:
                while (item := await queue.get()) is not None:
                    await run_one(item)

            await asyncio.gather(feeder(), *(worker() for _ in range(config.concurrency)))
"""),
]
LOSES = {"test_poison_document_does_not_stop_the_batch",
         *(f"test_scenario[{name}]" for name in ("transient_faults", "crash_during_call", "large_batch"))}
MAY_LOSE: set[str] = set()
SCENARIO_CHECKS = {"not scored"}
MESSAGE = r"poison-document-isolated"
