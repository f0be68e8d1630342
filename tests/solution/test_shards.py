"""The reference's ``in_shard``: shards ``i/n`` partition any batch by a stable hash of the key."""

from __future__ import annotations

import subprocess
import sys
from types import ModuleType

import pytest
from batchlab.paths import solution_module
from batchlab.worker import load_impl

KEYS = [f"wiki|doc-{i:05d}|{i * 7919:x}|chunks" for i in range(2000)]


@pytest.fixture(scope="module")
def ref() -> ModuleType:
    """The reference solution, imported as the worker imports a student's module."""
    return load_impl(solution_module(), name="reference_shards")


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_shards_partition_the_keys(ref: ModuleType, n: int) -> None:
    """Every key belongs to exactly one of the shards 0/n ... n-1/n, and no shard is left empty."""
    owners = [[i for i in range(n) if ref.in_shard(key, f"{i}/{n}")] for key in KEYS]
    assert all(len(o) == 1 for o in owners)
    sizes = [sum(1 for o in owners if o == [i]) for i in range(n)]
    assert min(sizes) > len(KEYS) / n / 2, sizes


def test_no_shard_owns_every_key(ref: ModuleType) -> None:
    """``shard=None`` (a batch that is not sharded) owns every key."""
    assert all(ref.in_shard(key, None) for key in KEYS)


def test_the_owner_is_the_same_in_another_process(ref: ModuleType) -> None:
    """The hash is stable across processes (never Python's salted ``hash()``), so workers agree on owners."""
    here = "".join("1" if ref.in_shard(key, "1/3") else "0" for key in KEYS[:300])
    code = ("import sys; from batchlab.worker import load_impl; m = load_impl(sys.argv[1]); "
            "keys = [f'wiki|doc-{i:05d}|{i * 7919:x}|chunks' for i in range(300)]; "
            "print(''.join('1' if m.in_shard(k, '1/3') else '0' for k in keys))")
    there = subprocess.run([sys.executable, "-c", code, str(solution_module())], capture_output=True, text=True,
                           check=True, env={"PYTHONHASHSEED": "12345", "PATH": ""}).stdout.strip()
    assert there == here


@pytest.mark.parametrize("bad", ["2/2", "a/3", "1", "-1/2"])
def test_a_malformed_shard_is_refused(ref: ModuleType, bad: str) -> None:
    """A shard that is not ``i/n`` with ``0 <= i < n`` raises ValueError instead of silently owning nothing."""
    with pytest.raises(ValueError, match="i/n"):
        ref.in_shard(KEYS[0], bad)
