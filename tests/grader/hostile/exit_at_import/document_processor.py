"""Hostile: leaves the process at import, before the grader hears anything."""

import os

os._exit(0)


# --- the contract's names, so that the grader runs every child (none of them is implemented) ---


class CheckpointStore:
    def __init__(self, *args: object, **kwargs: object) -> None:
        raise NotImplementedError("a hostile fixture: no checkpoint")


def make_idempotency_key(doc: object, layer: str = "chunks") -> str:
    raise NotImplementedError("a hostile fixture: no key")


def backoff_delay(*args: object, **kwargs: object) -> float:
    raise NotImplementedError("a hostile fixture: no backoff")


async def process_documents_batch(documents: object, **kwargs: object) -> object:
    raise NotImplementedError("a hostile fixture: no batch")
