"""Hostile: never calls the service or the sink; writes the ledger lines of a perfect run itself.

The harness's ledger is the run directory's ``ledger.jsonl``, beside ``state_dir``: a submission can append
to it (through the path, or the harness's own open descriptor). The grader scores from the sink's committed
outputs and its ``puts`` table, so these lines alone earn nothing.
"""

import json
import os
import time
from pathlib import Path
from typing import Any

# --- the contract's names, so that the grader runs every child (none of them is implemented) ---


class CheckpointStore:
    def __init__(self, *args: object, **kwargs: object) -> None:
        raise NotImplementedError("a hostile fixture: no checkpoint")


def make_idempotency_key(doc: object, layer: str = "chunks") -> str:
    raise NotImplementedError("a hostile fixture: no key")


def backoff_delay(*args: object, **kwargs: object) -> float:
    raise NotImplementedError("a hostile fixture: no backoff")


async def process_documents_batch(documents: Any, *, batch_id: str, service: Any, sink: Any, state_dir: Any,
                                  config: Any = None, **kwargs: Any) -> Any:
    ledger = Path(state_dir).parent / "ledger.jsonl"
    with open(ledger, "a", encoding="utf-8") as fh:
        for doc in documents:
            ident = str(getattr(doc, "id", doc))
            for ev in ("call_start", "call_end", "sink_put"):
                fh.write(json.dumps({"ev": ev, "t": time.time(), "pass": 1, "pid": os.getpid(), "doc_id": ident,
                                     "ident": ident, "mode": "full", "forged": True}) + "\n")
    raise RuntimeError("forged the ledger")
