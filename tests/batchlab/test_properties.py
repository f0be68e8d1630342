"""Property-based tests: arbitrary bytes and JSON values as batch input (issue 14).

Whatever the file holds, ``load_batch`` returns a batch or raises
``BatchInputError``, and ``batchlab validate`` / ``batchlab run`` exit 0, or exit 2
with the unified error in strict JSON: never a traceback. A refused ``run`` leaves a
finished run directory byte for byte as it was.

The example budgets are fixed, small and derandomized so that CI takes seconds
(:data:`CI_BUDGETS`, the ``run`` property fewest: an accepted input starts a worker).
``python scripts/fuzz_inputs.py --scale 50`` runs the same properties with fifty
times the budgets and a random seed each time (``HYPOTHESIS_SCALE``).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest

# Hypothesis keeps caches (Unicode tables, constants) in a storage folder, by default `.hypothesis/` in the
# current directory: keep it out of the checkout (DESIGN 10: tests write only into temporary folders).
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(tempfile.gettempdir(), "batchlab-hypothesis"))

from batchlab.cli import main  # noqa: E402
from batchlab.documents import Batch, load_batch, try_parse  # noqa: E402
from batchlab.errors import BatchInputError  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

#: Examples per property in CI (a few seconds each on a loaded 2-core machine).
CI_BUDGETS = {"bytes": 150, "json": 80, "run": 12}
SCALE = int(os.environ.get("HYPOTHESIS_SCALE", "1"))


def budget(name: str) -> settings:
    return settings(max_examples=CI_BUDGETS[name] * SCALE, deadline=None, derandomize=SCALE == 1,
                    database=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                          HealthCheck.too_slow, HealthCheck.data_too_large])

# Strings with anything JSON can carry: lone surrogates, NUL, BOMs, every plane.
any_text = st.text(st.characters(codec=None, categories=None), max_size=40)
scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | any_text)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(any_text, inner, max_size=4), max_leaves=12)
documents = st.fixed_dictionaries(
    {}, optional={"id": json_values | any_text, "content": json_values | any_text, "source": json_values,
                  "title": json_values, "metadata": json_values}) | json_values
batches = (st.fixed_dictionaries({"documents": st.lists(documents, max_size=5)},
                                 optional={"batch_id": json_values | any_text})
           | st.lists(documents, max_size=5) | json_values)


def encode(value: Any) -> bytes:
    """JSON text of ``value``, with lone surrogates written as escapes (as a hostile file would)."""
    return json.dumps(value, ensure_ascii=True).encode("ascii")


def cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


def assert_clean_answer(code: int, out: str) -> None:
    assert code in (0, 2), out
    if code == 2:
        payload = json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} is not strict JSON"))
        assert set(payload["error"]) == {"code", "message", "details", "hints"}
    out.encode("utf-8")  # printable


def check_load(path: Path) -> None:
    try:
        batch = load_batch(path)
    except BatchInputError as exc:
        json.loads(exc.to_json(), parse_constant=lambda c: pytest.fail(f"{c} is not strict JSON"))
        return
    assert isinstance(batch, Batch)
    for raw in batch.documents:
        try_parse(raw)  # a Document or an InvalidDocumentError, never another exception


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A finished ``batchlab run`` (6 documents) and the input file it belongs to."""
    from batchlab.examples import make_documents, write_input

    base = tmp_path_factory.mktemp("finished")
    source = write_input(base / "input.json", make_documents(6, seed=4, min_bytes=100, max_bytes=400))
    code, out = cli("run", "--input", str(source), "--run-dir", str(base / "run"), "--latency-ms", "1")
    assert code == 0, out
    shutil.copytree(base / "run", base / "pristine")
    return base / "run", source


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


class TestArbitraryInput:
    @budget("bytes")
    @given(blob=st.binary(max_size=300))
    def test_load_batch_on_arbitrary_bytes(self, blob: bytes, tmp_path: Path) -> None:
        path = tmp_path / "in.json"
        path.write_bytes(blob)
        check_load(path)

    @budget("json")
    @given(value=batches)
    def test_load_batch_and_validate_on_arbitrary_json(self, value: Any, tmp_path: Path) -> None:
        path = tmp_path / "in.json"
        path.write_bytes(encode(value))
        check_load(path)
        assert_clean_answer(*cli("validate", str(path)))

    @budget("run")
    @given(blob=st.binary(max_size=200) | batches.map(encode))
    def test_a_refused_run_leaves_a_finished_run_directory_unchanged(
            self, blob: bytes, finished_run: tuple[Path, Path], tmp_path: Path) -> None:
        run_dir, source = finished_run
        before = snapshot(run_dir)
        saved = source.read_bytes()
        try:
            source.write_bytes(blob)  # the same path: the run directory's own input, now hostile
            code, out = cli("run", "--input", str(source), "--run-dir", str(run_dir), "--latency-ms", "1")
        finally:
            source.write_bytes(saved)
        assert_clean_answer(code, out)
        if code == 2:
            assert snapshot(run_dir) == before
        else:  # a valid new input on the same path: the run went ahead; restore the finished run for the next
            shutil.rmtree(run_dir)
            shutil.copytree(run_dir.with_name("pristine"), run_dir)
