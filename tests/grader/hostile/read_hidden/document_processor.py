"""Hostile: reads the hidden scenarios and earlier results and raises their text, so that it shows in the feedback."""

import sys
from pathlib import Path

import batchlab

KIT = Path(batchlab.__file__).resolve().parents[2]
found = []
for folder in (KIT / "grader" / "hidden", Path.cwd().parents[1]):
    try:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix in (".py", ".json"):
                found.append(f"{path}: {path.read_text(encoding='utf-8', errors='replace')[:3000]}")
    except OSError as exc:
        found.append(f"{folder}: {exc}")
if "probe.py" in (sys.argv[0] if sys.argv else ""):
    raise RuntimeError("LEAK " + " | ".join(found))


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
