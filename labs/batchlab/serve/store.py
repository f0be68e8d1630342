"""A batch's record on disk, and the index of every batch the service holds.

Layout under the data folder (``--data``, default ``runs/service/``)::

    DATA/index.json                   ids, names, states, newest first (rebuilt from the records)
    DATA/batches/ID/batch.json        the record: settings, state, why, passes
    DATA/batches/ID/input.json        the batch exactly as it was uploaded (validated; input.jsonl for JSON Lines)
    DATA/batches/ID/run/              the run directory of batchlab.runner (spec, ledger, sink, state)

The record is the truth of a batch's *state*; the ledger is the truth of its
*progress*. Each record is written whole to a temporary file and renamed over
the old one, so a server killed mid-write leaves the old record, never half of
one; the index is a convenience rebuilt from the records at every start.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

QUEUED = "queued"
RUNNING = "running"
INTERRUPTED = "interrupted"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
BATCH_STATES = (QUEUED, RUNNING, INTERRUPTED, COMPLETED, FAILED, CANCELLED)


@dataclass
class Settings:
    """What a client may choose for a batch (the CLI's options of ``batchlab run``)."""

    fault_rate: float = 0.03
    seed: int = 15
    concurrency: int = 8
    crash: str = "none"  #: crash plan of the first pass (``batchlab.faults.CRASH_KINDS``)
    at: int = 0  #: the K-th call or commit the crash lands on (0: the runner's default)
    latency_ms: float = 10.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PassRecord:
    """How one worker process of the batch ended, as the runner saw it."""

    pass_no: int
    outcome: str
    returncode: int | None
    duration_s: float
    started_at: float
    stopped_by: str | None = None


@dataclass
class BatchRecord:
    """One batch as the service keeps it (``batch.json``)."""

    id: str
    name: str
    created_at: float
    settings: Settings
    impl: str
    documents: int
    state: str = QUEUED
    reason: str | None = None  #: why the batch is in its state (a kill, a stop, an error), for people
    passes: list[PassRecord] = field(default_factory=list)
    updated_at: float = 0.0
    finished_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchRecord:
        data = dict(data)
        data["settings"] = Settings(**data.get("settings", {}))
        data["passes"] = [PassRecord(**p) for p in data.get("passes", [])]
        return cls(**data)


def new_batch_id(now: float | None = None) -> str:
    """``b-YYYYmmdd-HHMMSS-xxxx``: sortable by creation time, unique, a valid batch id and file name."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now if now is not None else time.time()))
    return f"b-{stamp}-{secrets.token_hex(3)}"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to a temporary file beside ``path`` and rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


class Store:
    """The data folder: where each batch's files are, and its record read and written."""

    def __init__(self, data_dir: str | Path) -> None:
        self.root = Path(data_dir).resolve()
        self.batches = self.root / "batches"
        self.incoming = self.root / ".incoming"
        for folder in (self.batches, self.incoming):
            folder.mkdir(parents=True, exist_ok=True)
        for stale in self.incoming.iterdir():  # an upload a killed server was validating: never a batch
            stale.unlink(missing_ok=True)

    def batch_dir(self, batch_id: str) -> Path:
        return self.batches / batch_id

    def run_dir(self, batch_id: str) -> Path:
        return self.batch_dir(batch_id) / "run"

    def input_path(self, batch_id: str, format: str | None = None) -> Path:
        """The batch's input: ``input.jsonl`` for a JSON Lines upload, ``input.json`` otherwise.

        ``format`` names the file to write; without it, the one that exists (a JSON Lines one if any).
        """
        if format is None:
            lines = self.batch_dir(batch_id) / "input.jsonl"
            return lines if lines.exists() else self.batch_dir(batch_id) / "input.json"
        return self.batch_dir(batch_id) / ("input.jsonl" if format == "jsonl" else "input.json")

    def save(self, record: BatchRecord) -> None:
        record.updated_at = time.time()
        write_json_atomic(self.batch_dir(record.id) / "batch.json", record.to_dict())

    def load_all(self) -> list[BatchRecord]:
        """Every readable record; a folder without one (a refused or half-created batch) is skipped."""
        records = []
        for folder in sorted(self.batches.iterdir()):
            try:
                data = json.loads((folder / "batch.json").read_text(encoding="utf-8"))
                records.append(BatchRecord.from_dict(data))
            except (OSError, ValueError, TypeError, KeyError):
                continue
        return records

    def write_index(self, records: list[BatchRecord]) -> None:
        rows = [{"id": r.id, "name": r.name, "state": r.state, "created_at": r.created_at}
                for r in sorted(records, key=lambda r: (r.created_at, r.id), reverse=True)]
        write_json_atomic(self.root / "index.json", {"batches": rows})
