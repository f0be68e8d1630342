"""Hostile: forges the step tests' records from inside the probe child (steps 04 to 06).

It never lets the service answer: ``embed`` is replaced by a local fake (the vectors ``batchlab.pipeline``
computes), and each fake call writes the ``call_start``/``call_ok`` lines a real call would, wherever it can
reach a ledger: the ledger object the service or the sink carries, the harness's socket (the proxies'
channel), the ``ledger.jsonl`` beside ``state_dir``, and, without a sandbox, every ``ledger.jsonl`` the grader
(its parent) holds open. Commits go through ``sink.put``; a resume skips what the sink holds. So a run looks
complete, in order, concurrent and resumable, with no service call behind it.

Where the probe's service, sink and ledger live in the student's process, this earned step points (the
commits have ``call_ok`` lines). Behind the process boundary the harness side refuses worker call events,
records each commit the service never answered ``unbacked``, and finds lines it did not write in its ledger.
"""

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from batchlab.contract import BatchReport
from batchlab.documents import ident_of, parse_document
from batchlab.pipeline import chunk_text, clean_text, embed

# --- the contract's names of steps 01-03, so that every check runs (none of them is implemented) ---


class CheckpointStore:
    def __init__(self, *args: object, **kwargs: object) -> None:
        raise NotImplementedError("a hostile fixture: no checkpoint")


def make_idempotency_key(doc: object, layer: str = "chunks") -> str:
    raise NotImplementedError("a hostile fixture: no key")


def backoff_delay(*args: object, **kwargs: object) -> float:
    raise NotImplementedError("a hostile fixture: no backoff")


_CALLS = {"n": 0, "inflight": 0}


def _parent_ledgers() -> list[Path]:
    """Every ledger the parent holds open (only reachable without a sandbox: the PID namespace hides it)."""
    found = []
    try:
        for fd in Path(f"/proc/{os.getppid()}/fd").iterdir():
            target = os.readlink(fd)
            if target.endswith("ledger.jsonl"):
                found.append(Path(target))
    except OSError:
        pass
    return found


def _forge(service: Any, sink: Any, ev: str, here: Path | None, **fields: Any) -> None:
    """One forged ledger line, written through every way there is."""
    written = False
    for holder in (service, sink):
        ledger = getattr(holder, "ledger", None)
        if ledger is not None and hasattr(ledger, "emit"):
            ledger.emit(ev, **fields)
            written = True
            break
    channel = getattr(service, "_channel", None)
    if channel is not None:
        try:
            channel.send({"op": "emit", "ev": ev, "fields": fields})
        except Exception:  # noqa: BLE001 - the harness side is gone: nothing to forge there
            pass
    line = json.dumps({"ev": ev, "t": time.time(), "pass": 1, "pid": os.getpid(), **fields}) + "\n"
    for path in ([here / "ledger.jsonl"] if here is not None and not written else []) + _parent_ledgers():
        try:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(line)
        except OSError:
            pass


async def _fake_call(service: Any, sink: Any, doc: Any, chunk: int, text: str, here: Path | None) -> list[float]:
    _CALLS["n"] += 1
    _CALLS["inflight"] += 1
    base = {"doc_id": doc.id, "ident": ident_of(doc), "chunk": chunk, "attempt": 1, "call": _CALLS["n"]}
    _forge(service, sink, "call_start", here, **base, inflight=_CALLS["inflight"], doc_inflight=1)
    await asyncio.sleep(0.001)
    _CALLS["inflight"] -= 1
    _forge(service, sink, "call_ok", here, **base, latency=0.001)
    return embed(text)


def _here(service: Any) -> Path | None:
    ledger = getattr(service, "ledger", None)
    path = getattr(ledger, "path", None)
    return Path(path).parent if path is not None else None


async def process_document(doc: Any, *, service: Any, config: Any, sleep: Any = None, on_call: Any = None,
                           **kwargs: Any) -> dict[str, Any]:
    chunks = chunk_text(clean_text(doc.content))
    vectors = []
    for i, text in enumerate(chunks):
        if on_call is not None:
            on_call()
        vectors.append(await _fake_call(service, None, doc, i, text, _here(service)))
    return {"mode": "full", "chunks": chunks, "vectors": vectors, "error": None, "retries": 0}


async def run_bounded(items: Any, worker: Any, *, limit: int) -> None:
    gate = asyncio.Semaphore(limit)

    async def one(item: Any) -> None:
        async with gate:
            await worker(item)

    await asyncio.gather(*(one(item) for item in items))


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


async def process_documents_batch(documents: Any, *, batch_id: str, service: Any, sink: Any, state_dir: Any,
                                  config: Any = None, progress: Any = None, **kwargs: Any) -> Any:
    docs = _documents(documents)
    here = Path(state_dir).parent
    committed = set(sink.keys())
    todo = [d for d in docs if f"{ident_of(d)}|chunks" not in committed]
    limit = max(1, int(getattr(config, "concurrency", 1) or 1))

    async def one(doc: Any) -> None:
        chunks = chunk_text(clean_text(doc.content))
        vectors = [await _fake_call(service, sink, doc, i, c, here) for i, c in enumerate(chunks)]
        sink.put(f"{ident_of(doc)}|chunks", doc, chunks, vectors, mode="full")
        if progress is not None:
            progress(doc.id, "done")

    await run_bounded(todo, one, limit=limit)
    skipped = len(docs) - len(todo)
    return BatchReport(batch_id=batch_id, total=len(documents), unique=len(docs),
                       rejected=len(documents) - len(docs), done=len(docs), executed=len(todo), skipped=skipped,
                       checkpoint_hit_rate=skipped / len(docs) if docs else 0.0)
