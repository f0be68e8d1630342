"""Hostile: a fork storm at import: up to 150 processes from every child, each sleeping (bounded here so that a
grader without a sandbox running as root, where the process-count limit does not apply, survives it too)."""

import os
import time

children = 0
for _ in range(150):
    try:
        pid = os.fork()
    except OSError:  # the process-count limit (an unprivileged grader)
        break
    if pid == 0:
        time.sleep(600)
        os._exit(0)
    children += 1


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
