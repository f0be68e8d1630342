"""Refresh the stored outputs of the step notebooks after an edit (a maintenance tool, not a test).

    python tests/notebooks/refresh_outputs.py [notebooks/01_checkpoint.ipynb ...]

Executes each notebook with the reference selected and ``BATCHLAB_STRICT=1``, then
keeps outputs only on ``# NBVAL_CHECK_OUTPUT`` cells (what nbval compares) and
clears every other output, so that students open clean notebooks and the diff
shows only what changed. Without arguments: every ``notebooks/0*.ipynb``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
from batchlab.paths import kit_root, solution_module
from nbclient import NotebookClient


def refresh(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    started = time.monotonic()
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    count = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.execution_count = None
        cell.metadata = {}
        if "NBVAL_CHECK_OUTPUT" in cell.source:
            if not cell.outputs:
                raise SystemExit(f"{path}: a NBVAL_CHECK_OUTPUT cell printed nothing")
            count += 1
            cell.execution_count = count  # nbval does not compare a cell that looks unrun
            for output in cell.outputs:
                if "execution_count" in output:
                    output["execution_count"] = count
        else:
            cell.outputs = []
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, path)
    return time.monotonic() - started


def main(argv: list[str]) -> int:
    os.environ["BATCHLAB_IMPL"] = str(solution_module())
    os.environ["BATCHLAB_STRICT"] = "1"
    paths = [Path(a) for a in argv] or sorted((kit_root() / "notebooks").glob("0*.ipynb"))
    for path in paths:
        print(f"{path.name}: {refresh(path):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
