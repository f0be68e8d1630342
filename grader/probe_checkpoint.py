"""Probe checks of step 01, the checkpoint store: scripted operations, namespaces, a kill target, a dump.

Each check takes ``(module, args)`` and returns JSON-ready facts; the parent
(``grader/test_01_checkpoint.py``) judges them. The cost of a transition is
measured in :mod:`grader.probe_cost`.
"""

from __future__ import annotations

import os
from typing import Any

from batchlab.contract import PROCESSING

from .probe_common import StudentCodeError, describe, entries_dict, entry_dict, need, student_code


def _script_op(store_cls: Any, store: Any, op: list[Any], state_dir: str, batch_id: str) -> tuple[Any, Any]:
    """Run one scripted operation on the student's store; returns the (possibly new) store and the value."""
    name = op[0]
    if name == "open":
        return store_cls(state_dir, batch_id), None
    if name == "transition":
        _, key, state, doc_id, error = op
        kwargs: dict[str, Any] = {"doc_id": doc_id} if doc_id is not None else {}
        if error is not None:
            kwargs["error"] = error
        return store, entry_dict(store.transition(key, state, **kwargs))
    if name == "get":
        return store, entry_dict(store.get(op[1]))
    if name == "entries":
        return store, entries_dict(store)
    if name == "close":
        store.close()
        return store, None
    raise ValueError(f"unknown op {name}")


def check_checkpoint_script(module: Any, args: dict[str, Any]) -> list[dict[str, Any]]:
    """Run a list of store operations; record each result or exception (illegal moves are expected to raise)."""
    store_cls = need(module, "CheckpointStore")
    state_dir, batch_id = args["state_dir"], args.get("batch_id", "batch-ckpt")
    store: Any = None
    results: list[dict[str, Any]] = []
    for op in args["ops"]:
        try:
            with student_code():
                store, value = _script_op(store_cls, store, op, state_dir, batch_id)
            results.append({"op": op, "value": value})
        except StudentCodeError as exc:
            if isinstance(exc.original, NotImplementedError):
                raise
            results.append({"op": op, "raised": describe(exc.original, module)})
    return results


#: The states store n gives its shared keys, in turn (so that no two stores agree).
_FINALS = ["done", "degraded", "failed", "processing"]


def _write_own_keys(store: Any, n: int) -> dict[str, str]:
    """Store n moves ``shared-0``..``shared-2`` to states of its own and ``only-n`` to done; returns what it wrote."""
    mine: dict[str, str] = {}
    for k in range(3):
        key, final = f"shared-{k}", _FINALS[(n + k) % len(_FINALS)]
        store.transition(key, PROCESSING, doc_id=f"doc-{k}")
        if final != PROCESSING:
            store.transition(key, final, error=None if final == "done" else "boom")
        mine[key] = final
    store.transition(f"only-{n}", PROCESSING, doc_id=f"only-{n}")
    store.transition(f"only-{n}", "done")
    mine[f"only-{n}"] = "done"
    return mine


def check_checkpoint_namespaces(module: Any, args: dict[str, Any]) -> dict[str, Any]:
    """Stores of several ``(batch_id, shard)`` in one state_dir write the same keys, each to other states.

    Store n moves ``shared-0``..``shared-2`` to a state of its own (and ``only-n`` to done);
    every store's ``entries()`` is read with all stores open, and again after closing
    and reopening them all. The parent compares each with what that store wrote.
    """
    store_cls = need(module, "CheckpointStore")

    def open_all() -> list[Any]:
        return [store_cls(args["state_dir"], b, shard=sh) if sh else store_cls(args["state_dir"], b)
                for b, sh in args["stores"]]

    labels = [f"{batch_id}" + (f" shard {shard}" if shard else "") for batch_id, shard in args["stores"]]
    with student_code():
        stores = open_all()
        own = {labels[n]: _write_own_keys(store, n) for n, store in enumerate(stores)}
        before = {labels[n]: entries_dict(s) for n, s in enumerate(stores)}
        for store in stores:
            store.close()
        reopened = open_all()
        after = {labels[n]: entries_dict(s) for n, s in enumerate(reopened)}
        for store in reopened:
            store.close()
    return {"own": own, "before reopen": before, "after reopen": after}


def check_checkpoint_hammer(module: Any, args: dict[str, Any]) -> dict[str, Any]:
    """Transition keys forever, logging each acknowledged transition; the parent SIGKILLs this process."""
    store_cls = need(module, "CheckpointStore")
    keys = [f"key-{i:04d}" for i in range(int(args["keys"]))]
    fd = os.open(args["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    with student_code():
        store = store_cls(args["state_dir"], args.get("batch_id", "batch-kill"))
    for _ in range(1_000_000):
        for i, key in enumerate(keys):
            with student_code():
                entry = entry_dict(store.transition(key, PROCESSING, doc_id=f"doc-{i:04d}"))
                if entry is None or entry["attempts"] is None:
                    entry = entry_dict(store.get(key))
            attempts = entry["attempts"] if entry else None
            os.write(fd, f"{key}\t{attempts}\n".encode())
    return {"finished": True}


def check_checkpoint_dump(module: Any, args: dict[str, Any]) -> dict[str, Any]:
    """Every entry of a store reopened after the hammer's kill (or after a batch run)."""
    store_cls = need(module, "CheckpointStore")
    with student_code():
        store = store_cls(args["state_dir"], args.get("batch_id", "batch-kill"))
        entries = entries_dict(store)
        store.close()
    return {"entries": entries}
