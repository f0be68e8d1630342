"""Where the dashboard's batches live, and that none outlives the kernel that started it.

Apart from the model because it is about the files and processes a teaching session leaves behind, not
about a batch: by default each Run gets a temporary run directory that the model owns and Reset removes;
with ``runs_dir`` it is a dated folder kept for later (``batchlab metrics``, the report). Every live
model is closed when the interpreter exits, so a kernel that exits takes no worker with it into the
background and leaves no temporary directory.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import time
import weakref
from pathlib import Path
from typing import Protocol


class Closable(Protocol):
    def close(self) -> None: ...


_LIVE: weakref.WeakSet[Closable] = weakref.WeakSet()


def close_at_exit(model: Closable) -> None:
    """Close ``model`` when the interpreter exits (unless it was garbage-collected before)."""
    _LIVE.add(model)


@atexit.register
def _close_all() -> None:
    for model in list(_LIVE):
        model.close()


def new_run_dir(runs_dir: Path | None) -> tuple[Path, Path | None]:
    """A new run directory and, if the model owns it (no ``runs_dir``: a temporary one), the same path again."""
    if runs_dir is None:
        path = Path(tempfile.mkdtemp(prefix="batchlab-dashboard-"))
        return path, path
    runs_dir.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=time.strftime("dashboard-%Y%m%d-%H%M%S-"), dir=runs_dir)), None


def remove_run_dir(owned: Path | None) -> None:
    """Remove a run directory the model owns (None: nothing to remove)."""
    if owned is not None:
        shutil.rmtree(owned, ignore_errors=True)
