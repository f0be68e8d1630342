"""Hostile: writes a forged full-marks results.json wherever the grader may put it, and leaves a watcher that
keeps rewriting it (a detached double fork) after the grader is done."""

import contextlib
import json
import os
import time
from pathlib import Path

FORGED = json.dumps({"score": 999.0, "max_score": 999.0, "tests": [], "output": "FORGED"})


def _targets() -> list[Path]:
    out = [Path.cwd().parents[1] / "results.json", Path.cwd().parent / "results.json"]
    with contextlib.suppress(OSError):
        args = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().split(b"\0")
        for i, arg in enumerate(args[:-1]):
            if arg == b"--results":
                out.append(Path(args[i + 1].decode()))
    return out


def _forge() -> None:
    for target in _targets():
        with contextlib.suppress(OSError):
            target.write_text(FORGED, encoding="utf-8")


_forge()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        for _ in range(300):
            _forge()
            time.sleep(0.2)
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
