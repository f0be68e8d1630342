"""Concurrent chunks of one document: all chunks are sent at once with ``asyncio.gather``."""

REPLACEMENTS = [
    ("""        for index, chunk in enumerate(chunks):
            vectors.append(await call_with_retries(index, chunk))
""", """        vectors = list(await asyncio.gather(*(call_with_retries(i, c) for i, c in enumerate(chunks))))
"""),
]
LOSES = {"test_chunks_of_one_document_in_order"}
# Sent all at once, the chunks of the batch's three long documents finish so fast that a pass can end
# before its random kill fires: the scenario is then not scored ("the planned crash never fired").
MAY_LOSE = {"test_scenario[random_kills]",
            # every chunk of the documents in flight fails at once when the outage begins: above the outage bound
            "test_scenario[outage]"}
# All chunks of a document at once: a stuck chunk's siblings finish and the pass's timing shifts (seen: 0 or 6 of 6
# across regrades). Planned kills land at the crash point every run (the worker's proxy dies there): no variation.
MAY_LOSE |= {"test_scenario[stuck_calls]"}
SCENARIO_CHECKS: set[str] = set()
MESSAGE = r"chunk calls in flight at once"
