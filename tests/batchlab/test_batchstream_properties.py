"""Property-based: on any bytes and any JSON value, the streamed JSON reader agrees with ``load_batch``.

Same documents (and the same types: a rejected document stays a ``RejectedDocument``) or the same
whole-batch error code, whatever the file holds and wherever the window's edge falls. Budgets are
small, fixed and derandomized, as in ``test_properties.py``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(tempfile.gettempdir(), "batchlab-hypothesis"))

from batchlab import jsonwindow  # noqa: E402
from batchlab.batchstream import open_batch  # noqa: E402
from batchlab.documents import load_batch  # noqa: E402
from batchlab.errors import BatchInputError  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SETTINGS = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

any_text = st.text(st.characters(codec=None, categories=None), max_size=20)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | any_text
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(any_text, inner, max_size=3), max_leaves=10)
documents = st.fixed_dictionaries({}, optional={"id": any_text, "content": any_text, "metadata": json_values}) \
    | json_values
batches = (st.fixed_dictionaries({"documents": st.lists(documents, max_size=4)},
                                  optional={"batch_id": any_text | json_values})
           | st.lists(documents, max_size=4) | json_values)


def reading(read: Any, path: Path) -> tuple[str, Any]:
    try:
        docs = list(read(path))
    except BatchInputError as exc:
        return "error", exc.code
    return "documents", [(type(d), d) for d in docs]


def agree(path: Path) -> None:
    assert reading(open_batch, path) == reading(lambda p: load_batch(p).documents, path)


@SETTINGS
@given(value=batches, chunk=st.sampled_from([1, 3, 8, 1 << 20]), indent=st.sampled_from([None, 1]))
def test_the_stream_reads_any_json_batch_as_load_batch_does(value: Any, chunk: int, indent: int | None,
                                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsonwindow, "CHUNK_BYTES", chunk)
    path = tmp_path / "in.json"
    path.write_bytes(json.dumps(value, ensure_ascii=True, indent=indent).encode())
    agree(path)


@SETTINGS
@given(blob=st.binary(max_size=200), chunk=st.sampled_from([1, 7, 1 << 20]))
def test_the_stream_refuses_any_bytes_as_load_batch_does(blob: bytes, chunk: int, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsonwindow, "CHUNK_BYTES", chunk)
    path = tmp_path / "in.json"
    path.write_bytes(blob)
    agree(path)
