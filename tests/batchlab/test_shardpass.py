"""batchlab.shardpass: what a pass runner keeps from one shard's pass to the next."""

from __future__ import annotations

from pathlib import Path

import pytest
from batchlab import batchstream
from batchlab.errors import BatchInputError
from batchlab.examples import make_documents, write_input
from batchlab.shardpass import InputCache


def test_a_runner_validates_its_input_once_and_each_pass_reads_it_whole(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Two passes on the same file validate it once; each gets a stream of every entry, with the count."""
    source = write_input(tmp_path / "in.json", make_documents(30, seed=1, max_bytes=800))
    validations = []
    real = batchstream.open_batch
    monkeypatch.setattr(batchstream, "open_batch", lambda path, **kw: validations.append(path) or real(path, **kw))
    cache = InputCache()
    first, second = cache.open(source), cache.open(source)
    assert len(validations) == 1
    assert len(first) == len(second) == 30
    assert [e.index for e in second.entries()] == list(range(30))


def test_a_file_changed_since_is_validated_again(tmp_path: Path) -> None:
    """When the input's size or time changed, the next pass validates it again: a broken file is refused."""
    source = write_input(tmp_path / "in.json", make_documents(10, seed=1, max_bytes=800))
    cache = InputCache()
    assert len(cache.open(source)) == 10
    source.write_text('[{"id": "x", "content": "cut', encoding="utf-8")
    with pytest.raises(BatchInputError):
        cache.open(source)


def test_a_runner_trusts_the_fleet_s_memo_of_this_very_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the memo the fleet wrote when it validated the file, a runner validates nothing, and knows the count."""
    source = write_input(tmp_path / "in.json", make_documents(25, seed=1, max_bytes=800))
    memo = tmp_path / "input.checked.json"
    batchstream.open_checked(source, memo)
    validations = []
    real = batchstream.open_batch
    monkeypatch.setattr(batchstream, "open_batch",
                        lambda path, **kw: validations.append(kw.get("validate", True)) or real(path, **kw))
    stream = InputCache(memo).open(source)
    assert validations == [False] and len(stream) == 25
    assert sum(1 for _ in stream.entries()) == 25
