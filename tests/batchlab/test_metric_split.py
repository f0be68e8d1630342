"""The end of a JSON Lines input folded by the ledger's child: the same figures as folded in one process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from batchlab import metric_fold, metric_input, metric_split
from batchlab.contract import BatchConfig
from batchlab.examples import make_documents, write_documents
from batchlab.faults import CRASH_AFTER_COMMIT, CrashPlan, FaultPlan
from batchlab.metric_child import LedgerChild
from batchlab.metrics import metrics_for_run
from batchlab.paths import solution_module
from batchlab.runner import RunSpec, run_passes
from batchlab.service import LatencyModel


@pytest.fixture(scope="module")
def jsonl_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A crashed and resumed run on JSON Lines with repeats early and late, bad lines and invalid documents."""
    if not solution_module().exists():
        pytest.skip("needs the reference solution, which a student distribution leaves out")
    base = tmp_path_factory.mktemp("split")
    docs = make_documents(60, seed=7, min_bytes=100, max_bytes=500, duplicates=0, invalid=3)
    docs = docs[:30] + [docs[2], docs[5]] + docs[30:] + [docs[1], docs[40], docs[40], docs[59]]
    source = base / "input.jsonl"
    write_documents(source, docs, format="jsonl")
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[20:20] = ["{not json\n"]
    lines[50:50] = ["[1, 2\n", "\n"]
    source.write_text("".join(lines), encoding="utf-8")
    spec = RunSpec(impl=solution_module(), input=source, run_dir=base / "run",
                   plan=FaultPlan(seed=4, transient_rate=0.05), latency=LatencyModel(median_ms=1.0),
                   config=BatchConfig(concurrency=4), timeout_s=120)
    run_passes(spec, [CrashPlan(CRASH_AFTER_COMMIT, at=25)])
    return spec.run_dir


def _force_split(monkeypatch: pytest.MonkeyPatch, boundaries: list[int | None]) -> None:
    """Blocks of 8 documents; the caller waits for the child at its first block and splits whatever is left."""
    monkeypatch.setattr(metric_input, "BLOCK", 8)
    monkeypatch.setattr(metric_split, "MIN_SPLIT_BYTES", 0)
    monkeypatch.setattr(LedgerChild, "ready", lambda self: True)
    poll = metric_split.InputSplit.poll

    def watched(self: metric_split.InputSplit) -> None:
        poll(self)
        boundaries.append(self.boundary)

    monkeypatch.setattr(metric_split.InputSplit, "poll", watched)


def test_the_child_folds_the_end_of_the_input_to_the_same_figures(jsonl_run: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Repeats across and within the two parts, bad lines in both: every figure as in one process, in memory or on disk."""
    alone = metrics_for_run(jsonl_run, parallel=False)
    assert alone.rejected >= 5 and alone.unique < alone.total - alone.rejected and len(alone.passes) == 2
    boundaries: list[int | None] = []
    _force_split(monkeypatch, boundaries)
    merged: list[int] = []
    merge = metric_fold.InputFold.merge

    def counted(self: metric_fold.InputFold, block: metric_fold.InputBlock, store: Any) -> None:
        merged.append(block.total)
        merge(self, block, store)

    monkeypatch.setattr(metric_fold.InputFold, "merge", counted)
    for on_disk in (False, True):
        merged.clear()
        both = metrics_for_run(jsonl_run, parallel=True, on_disk=on_disk, spill_keys=0 if on_disk else 10**9)
        assert both.to_dict() == alone.to_dict()
        assert boundaries[-1] is not None and boundaries[-1] > 0
        assert 10 < sum(merged) < alone.total - 8  # the child folded the end, the caller the rest


def test_a_child_that_fails_its_part_leaves_the_figures_unchanged(jsonl_run: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """An order the child cannot carry out (its input is gone): the caller folds that part itself."""
    expected = metrics_for_run(jsonl_run, parallel=False).to_dict()
    boundaries: list[int | None] = []
    _force_split(monkeypatch, boundaries)
    order = LedgerChild.order

    def bad_order(self: LedgerChild, what: dict[str, Any]) -> None:
        order(self, {**what, "input": str(jsonl_run / "no-such-input.jsonl")})

    monkeypatch.setattr(LedgerChild, "order", bad_order)
    assert metrics_for_run(jsonl_run, parallel=True).to_dict() == expected
    assert boundaries[-1] is not None


def test_a_json_array_is_not_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A JSON array cannot be entered in the middle: a free child gets no part of it, whatever is left."""
    monkeypatch.setattr(metric_split, "MIN_SPLIT_BYTES", 0)
    docs = make_documents(20, seed=3, min_bytes=100, max_bytes=300)
    write_documents(tmp_path / "input.json", docs)
    child = _FreeChild()
    split = metric_split.InputSplit(metric_split.open_batch(tmp_path / "input.json"), child)
    entries = split.documents()
    next(entries)
    split.poll()
    assert split.boundary is None and child.told == ["nothing"]
    assert 1 + sum(1 for _ in entries) == len(docs)


class _FreeChild:
    """A child whose ledger's half is ready: it records what it is told."""

    def __init__(self) -> None:
        self.answered = False
        self.told: list[str] = []

    def ready(self) -> bool:
        return True

    def half(self) -> object:
        self.answered = True
        return object()

    def no_order(self) -> None:
        self.told.append("nothing")

    def order(self, what: dict[str, Any]) -> None:
        self.told.append(json.dumps(what))
