"""Hostile: the exact forgery. Never calls the service; writes the ledger lines and the sink rows a correct run
would write (the same events, fields, keys, chunks and vectors: ``batchlab.pipeline`` is importable), straight
into the run directory beside ``state_dir``; where it cannot (the sandbox shows it neither file), it commits the
same outputs through ``sink.put`` without a single service call. Then it reports a perfect run.

The harness side writes the ledger and the sink (``batchlab.harness``): in the sandbox the files are not there to
write, and a full output whose chunks the service never answered is recorded ``unbacked``; without the sandbox
the direct writes succeed but the harness finds lines it did not write and another writer of its sink.
"""

import json
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from batchlab.contract import BatchReport
from batchlab.documents import ident_of, parse_document
from batchlab.pipeline import expected_output
from batchlab.sink import SCHEMA

# --- the contract's names, so that the grader runs every child (none of them is implemented) ---


class CheckpointStore:
    def __init__(self, *args: object, **kwargs: object) -> None:
        raise NotImplementedError("a hostile fixture: no checkpoint")


def make_idempotency_key(doc: object, layer: str = "chunks") -> str:
    raise NotImplementedError("a hostile fixture: no key")


def backoff_delay(*args: object, **kwargs: object) -> float:
    raise NotImplementedError("a hostile fixture: no backoff")


def _documents(raw: Any) -> list[Any]:
    seen, docs = set(), []
    for entry in raw:
        try:
            doc = parse_document(entry)
        except Exception:  # noqa: BLE001 - an invalid entry: skipped
            continue
        if ident_of(doc) not in seen:
            seen.add(ident_of(doc))
            docs.append(doc)
    return docs


def _pass_no() -> int:
    return int(sys.argv[sys.argv.index("--pass") + 1]) if "--pass" in sys.argv else 1


def _write_records(run: Path, docs: list[Any]) -> bool:
    """The ledger lines and sink rows of a perfect pass, written directly; False where the files cannot be written."""
    lines, call, now, pass_no = [], 0, time.time(), _pass_no()
    try:
        conn = sqlite3.connect(str(run / "sink.sqlite"), isolation_level=None)
        conn.executescript(SCHEMA)
        for n, doc in enumerate(docs, start=1):
            ident, out = ident_of(doc), expected_output(doc)
            for chunk in range(len(out["chunks"])):
                call += 1
                base = {"pass": pass_no, "pid": os.getpid(), "doc_id": doc.id, "ident": ident, "chunk": chunk,
                        "attempt": 1, "call": call}
                lines.append({"ev": "call_start", "t": now, **base, "inflight": 1, "doc_inflight": 1})
                lines.append({"ev": "call_ok", "t": now + 0.01, **base, "latency": 0.01})
            key = f"{ident}|chunks"
            conn.execute("INSERT OR REPLACE INTO outputs (key, doc_id, ident, mode, chunks, vectors, committed_at) "
                         "VALUES (?, ?, ?, 'full', ?, ?, ?)", (key, doc.id, ident, json.dumps(out["chunks"]),
                                                               json.dumps(out["vectors"]), now))
            conn.execute("INSERT INTO puts (key, doc_id, ident, mode, pass, t) VALUES (?, ?, ?, 'full', ?, ?)",
                         (key, doc.id, ident, pass_no, now))
            lines.append({"ev": "sink_put", "t": now, "pass": pass_no, "pid": os.getpid(), "doc_id": doc.id,
                          "ident": ident, "key": key, "mode": "full", "n": n, "writes": 1})
        conn.close()
        with open(run / "ledger.jsonl", "a", encoding="utf-8") as fh:
            fh.write("".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines))
        return True
    except (OSError, sqlite3.Error):
        return False


async def process_documents_batch(documents: Any, *, batch_id: str, service: Any, sink: Any, state_dir: Any,
                                  config: Any = None, progress: Any = None, **kwargs: Any) -> Any:
    docs = _documents(documents)
    if _pass_no() > 1:  # the resume of a perfect run finds everything committed
        return BatchReport(batch_id=batch_id, total=len(documents), unique=len(docs),
                           rejected=len(documents) - len(docs), done=len(docs), skipped=len(docs))
    if not _write_records(Path(state_dir).parent, docs):
        for doc in docs:  # the same outputs through the harness's sink, without a service call
            out = expected_output(doc)
            sink.put(f"{ident_of(doc)}|chunks", doc, out["chunks"], out["vectors"], mode="full")
    for doc in docs:
        if progress is not None:
            progress(doc.id, "done")
    return BatchReport(batch_id=batch_id, total=len(documents), unique=len(docs),
                       rejected=len(documents) - len(docs), done=len(docs), executed=len(docs))
