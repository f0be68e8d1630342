"""Hostile: rewrites the kit at import (the grader's tests, the thresholds) and drops a .pth into the venv.

Run by every child: without a sandbox the *next* submission would be graded by a changed grader.
"""

import contextlib
import sys
import sysconfig
from pathlib import Path

import batchlab

KIT = Path(batchlab.__file__).resolve().parents[2]
GRADER = Path(sys.argv[0]).resolve().parent if sys.argv and sys.argv[0].endswith("probe.py") else KIT / "grader"
targets = [*GRADER.glob("*.py"), KIT / "labs" / "batchlab" / "thresholds.toml", *KIT.glob("grader/*.py")]
for target in targets:
    with contextlib.suppress(OSError):
        with open(target, "a", encoding="utf-8") as fh:
            fh.write("\n# tampered by a submission\n")
with contextlib.suppress(OSError):
    (Path(sysconfig.get_paths()["purelib"]) / "zz_hostile_tamper.pth").write_text("# tampered\n", encoding="utf-8")
with contextlib.suppress(OSError):
    (KIT / "TAMPERED.txt").write_text("a submission wrote here\n", encoding="utf-8")


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
