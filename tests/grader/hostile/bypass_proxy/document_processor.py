"""Hostile: bypasses the harness's proxies. The service is monkeypatched to answer locally (fake replies: the
vectors ``batchlab.pipeline`` computes, no call made); the harness's socket (``--harness-fd``) is written
directly: ledger events only the harness side writes (call_start, call_ok, sink_put), and commits of outputs
for which no call was ever made. Then it reports a perfect run.

The harness side refuses (and counts) the events, and records each commit whose chunks the service never
answered ``unbacked``: the grader scores none of it.
"""

import os
import socket
import sys
import time
from typing import Any

from batchlab.contract import BatchReport
from batchlab.documents import ident_of, parse_document
from batchlab.pipeline import embed, expected_output
from batchlab.wire import encode

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


async def _fake_embed(doc: Any, chunk: int, text: str) -> list[float]:
    return embed(text)  # the answer the service would give, without asking it


def _raw_socket() -> socket.socket | None:
    if "--harness-fd" not in sys.argv:
        return None
    return socket.socket(fileno=os.dup(int(sys.argv[sys.argv.index("--harness-fd") + 1])))


def _doc_wire(doc: Any) -> dict[str, Any]:
    return {"id": doc.id, "content": doc.content, "source": doc.source, "title": doc.title, "metadata": {}}


def _talk_directly(raw: socket.socket, docs: list[Any]) -> None:
    """Forged ledger events, and commits without calls, straight onto the harness's socket."""
    frames = []
    for i, doc in enumerate(docs):
        ident, out = ident_of(doc), expected_output(doc)
        for chunk in range(len(out["chunks"])):
            fields = {"doc_id": doc.id, "ident": ident, "chunk": chunk, "attempt": 1, "call": i, "latency": 0.01,
                      "inflight": 1, "doc_inflight": 1}
            frames.append(encode({"op": "emit", "ev": "call_start", "fields": fields}))
            frames.append(encode({"op": "emit", "ev": "call_ok", "fields": fields}))
        frames.append(encode({"op": "put", "id": 10**9 + i, "key": f"{ident}|raw", "doc": _doc_wire(doc),
                              "chunks": out["chunks"], "vectors": out["vectors"], "mode": "full"}))
    raw.sendall(b"".join(frames))
    time.sleep(0.2)


async def process_documents_batch(documents: Any, *, batch_id: str, service: Any, sink: Any, state_dir: Any,
                                  config: Any = None, progress: Any = None, **kwargs: Any) -> Any:
    docs = _documents(documents)
    raw = _raw_socket()
    if raw is not None:
        _talk_directly(raw, docs)
    service.embed = _fake_embed  # fake replies
    for doc in docs:
        out = expected_output(doc)
        vectors = [await service.embed(doc, i, c) for i, c in enumerate(out["chunks"])]
        sink.put(f"{ident_of(doc)}|chunks", doc, out["chunks"], vectors, mode="full")
        if progress is not None:
            progress(doc.id, "done")
    return BatchReport(batch_id=batch_id, total=len(documents), unique=len(docs),
                       rejected=len(documents) - len(docs), done=len(docs), executed=len(docs))
