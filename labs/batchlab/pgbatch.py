"""Start a batch in a PostgreSQL store, and join it from any machine with only the URL, the batch id and an impl.

:func:`publish_batch` is what ``batchlab run --store URL`` does before its workers start: the spec (fault
plan, latency, config: :meth:`batchlab.runspec.RunSpec.to_dict`) and the input's entries go into the store,
streamed, and the batch's shards are created. :func:`join_batch` is what a ``batchlab worker --store URL
--batch-id ID --impl PATH`` does first: it waits until the batch is loaded, then writes a local work folder
that looks like a run directory (``spec.json`` naming *its* impl and a local ``input.jsonl`` streamed from the
store), so the processor, the service and the checkpoint run as for a run directory, while the leases, the
sink and the ledger are the store's. The checkpoint stays local to the worker: the sink is the truth, so a
worker that takes over a shard on another machine skips what the store already holds.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from . import shardweights
from .batchfile import check_input_path
from .batchstream import open_batch
from .errors import KitError
from .pgleases import PgLeaseStore
from .pgstore import PgConnection, batch_info, iter_document_texts, load_documents
from .rundir import RunDir
from .runspec import RunSpec
from .worker import INPUT_CHECKED

#: The local copy of the batch's entries in a joining worker's folder (JSON Lines: streamed both ways).
LOCAL_INPUT = "input.jsonl"


def publish_batch(db: PgConnection, spec: RunSpec, *, shards: int) -> int:
    """Put ``spec`` and its input's entries into the store and create the batch's shards; how many entries.

    Each shard gets its weight (:mod:`batchlab.shardweights`, estimated in a child process while the entries are
    streamed in), so the workers claim the longest shards first.
    """
    weighing = shardweights.start(spec.input, spec.impl, spec.config.layer, shards)
    try:
        count = load_documents(db, spec.batch_id, open_batch(spec.input), spec=spec.to_dict())
    except BaseException:
        weighing.kill()
        weighing.wait()
        raise
    PgLeaseStore(db).create_shards(spec.batch_id, shards, shardweights.result(weighing, shards))
    return count


def write_memo(memo: Path, source: Path, documents: int, batch_id: str) -> None:
    """Say that ``source`` was checked (:func:`batchlab.batchstream.open_checked`'s memo), so that the worker's pass
    runner does not read and parse the whole file again before its first pass: its entries were validated when
    the batch was published, and this worker wrote them one JSON line each."""
    st = os.stat(source)
    tmp = memo.with_name(memo.name + ".tmp")
    tmp.write_text(json.dumps({"path": str(check_input_path(source)), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                               "documents": documents, "batch_id": batch_id}), encoding="utf-8")
    os.replace(tmp, memo)


def join_batch(db: PgConnection, batch_id: str, impl: Path, folder: Path, *, wait_s: float = 60.0,
               sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> RunSpec:
    """A local work folder for ``batch_id`` (spec.json with ``impl``, input.jsonl from the store); its spec.

    Waits up to ``wait_s`` for a batch still being loaded; raises :class:`batchlab.errors.KitError`
    ``batch_not_found`` when the store has no such batch by then.
    """
    deadline = clock() + wait_s
    while True:
        info = batch_info(db, batch_id)
        if info is not None and info["loaded"]:
            break
        if clock() >= deadline:
            raise KitError(f"the store has no loaded batch {batch_id!r}", code="batch_not_found",
                           details={"batch_id": batch_id, "loading": info is not None},
                           hints=["Start it with `batchlab run --store URL --batch-id ID --input FILE`."])
        sleep(0.5)
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / LOCAL_INPUT
    partial = source.with_suffix(".part")
    count = 0
    with partial.open("w", encoding="utf-8") as fh:
        fh.write(json.dumps({"header": True, "batch_id": batch_id}) + "\n")
        for text in iter_document_texts(db, batch_id):
            fh.write(text + "\n")
            count += 1
    partial.replace(source)
    write_memo(folder / INPUT_CHECKED, source, count, batch_id)
    data = dict(info["spec"]) if isinstance(info["spec"], dict) else {}
    data.update({"impl": str(Path(impl).resolve()), "input": str(source.resolve()), "batch_id": batch_id})
    RunDir(folder).spec.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return RunSpec.from_dict(data, run_dir=folder)
