"""The ledger's half of a run's metric fold, in a process of its own, while the caller folds the input and the sink.

``python -m batchlab.metric_child RUN_DIR ON_DISK SPILL_KEYS`` folds the run directory's ledger
(:func:`batchlab.metric_fold.fold_ledger`, against its own copy of the sink's puts) and writes the
pickled :class:`batchlab.metric_fold.LedgerHalf` to its stdout. The two halves of
:func:`batchlab.metric_fold.fold_run` read different files and meet only at the end, so on two cores
a large run's metrics take about the time of the longer half instead of the sum (issue 17: the fold
of a million documents was 18 % of the first pass's wall). Nothing depends on it: whenever the
child fails or answers something else, the caller folds the ledger itself, with the same code, and
the figures are the same (``tests/batchlab/test_metric_child.py``). On a live run the two halves read the
sink a moment apart, as the ledger and the sink were always read a moment apart.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

from .fold_store import FoldStore
from .ledger_scan import scan_ledger
from .metric_fold import LedgerHalf, fold_ledger
from .rundir import RunDir

#: A ledger at least this large (about 35 000 documents, a fold of 2-3 s) is folded in a child (its start: 0.12-0.15 s).
PARALLEL_LEDGER_BYTES = 32 << 20


class LedgerChild:
    """The child folding one run directory's ledger; :meth:`result` waits for its :class:`LedgerHalf`."""

    def __init__(self, run: Path, *, on_disk: bool, spill_keys: int) -> None:
        # the child imports this very kit, wherever it was imported from (an installed package or a folder on sys.path)
        here = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "batchlab.metric_child", str(run), "1" if on_disk else "0", str(spill_keys)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)

    def result(self) -> LedgerHalf | None:
        """The child's half, or None when it failed (the caller then folds the ledger itself)."""
        out, _ = self.proc.communicate()
        if self.proc.returncode != 0:
            return None
        try:
            half = pickle.loads(out)  # our own child's answer, never a file someone else wrote
        except Exception:  # noqa: BLE001 - anything odd: fold in the caller instead
            return None
        return half if isinstance(half, LedgerHalf) else None

    def close(self) -> None:
        """Stop the child if it still runs (the caller gave up on it)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def fold_ledger_of(run: Path, *, on_disk: bool, spill_keys: int) -> LedgerHalf:
    """The ledger's half of ``run``'s fold, in this process (what the child does)."""
    from .metrics import sink_of  # the sink opened as the metrics open it

    with sink_of(run) as sink, FoldStore(on_disk=on_disk, spill_keys=spill_keys) as store:
        sink.load_puts(store, outputs=False)
        store.index_puts()
        return fold_ledger(scan_ledger(RunDir(run).ledger), store)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    half = fold_ledger_of(Path(args[0]), on_disk=args[1] == "1", spill_keys=int(args[2]))
    sys.stdout.buffer.write(pickle.dumps(half, protocol=pickle.HIGHEST_PROTOCOL))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
