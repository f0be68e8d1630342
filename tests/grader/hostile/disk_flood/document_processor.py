"""Hostile: floods the disk: one endless file in its work directory, then its temporary folder (bounded to 384 MB
there, so that a grader without a sandbox keeps its disk)."""

import contextlib
import os
import tempfile

block = b"x" * (1 << 20)
with contextlib.suppress(OSError):
    with open("flood.bin", "wb") as fh:
        for _ in range(10_000):
            fh.write(block)
written = 0
with contextlib.suppress(OSError):
    for n in range(48):
        with open(os.path.join(tempfile.gettempdir(), f"flood-{os.getpid()}-{n}.bin"), "wb") as fh:
            for _ in range(8):
                fh.write(block)
                written += 1


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
