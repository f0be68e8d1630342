"""The ledger's half of a run's metric fold, in a process of its own, while the caller folds the input and the sink.

``python -m batchlab.metric_child RUN_DIR ON_DISK SPILL_KEYS`` folds the run directory's ledger
(:func:`batchlab.metric_ledger.fold_ledger`, asking the sink's puts only who was committed before a pass's
first calls: :class:`batchlab.metric_sinks.SinkPuts`) and writes the
pickled :class:`batchlab.metric_ledger.LedgerHalf` to its stdout. The two halves of
:func:`batchlab.metric_fold.fold_run` read different files and meet only at the end, so on two cores
a large run's metrics take about the time of the longer half instead of the sum (issue 17: the fold
of a million documents was 18 % of the first pass's wall). Nothing depends on it: whenever the
child fails or answers something else, the caller folds the ledger itself, with the same code, and
the figures are the same (``tests/batchlab/test_metric_child.py``). On a live run the two halves read the
sink a moment apart, as the ledger and the sink were always read a moment apart.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

from .fold_store import FoldStore
from .ledger_scan import scan_ledger
from .metric_ledger import LedgerHalf, fold_ledger
from .metric_sinks import SinkPuts
from .metric_split import fold_part, ready
from .rundir import RunDir

#: A ledger at least this large (about 35 000 documents, a fold of 2-3 s) is folded in a child (its start: 0.12-0.15 s).
PARALLEL_LEDGER_BYTES = 32 << 20


class LedgerChild:
    """The child folding one run directory's ledger, then perhaps a part of the input (:mod:`batchlab.metric_split`).

    It writes its :class:`LedgerHalf` (pickled) to its stdout as soon as it has it, then reads one line
    on its stdin: an order for a part of the input (JSON) or nothing (the end of its stdin), and writes
    the number of blocks it folded. :meth:`result` alone is the old way: the half, and no order.
    """

    def __init__(self, run: Path, *, on_disk: bool, spill_keys: int) -> None:
        # the child imports this very kit, wherever it was imported from (an installed package or a folder on sys.path)
        here = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "batchlab.metric_child", str(run), "1" if on_disk else "0", str(spill_keys)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        #: True once the half was read (or found missing).
        self.answered = False
        self._half: LedgerHalf | None = None

    def ready(self) -> bool:
        """True when the child's half can be read without waiting (or the child has ended)."""
        return self.answered or (self.proc.stdout is not None and ready(self.proc.stdout))

    def half(self) -> LedgerHalf | None:
        """The child's half (waiting for it), or None when it failed (the caller then folds the ledger itself)."""
        if not self.answered:
            self.answered = True
            half = self._read()
            self._half = half if isinstance(half, LedgerHalf) else None
        return self._half

    def _read(self) -> Any:
        try:
            return pickle.load(self.proc.stdout)  # type: ignore[arg-type] # our own child's answer, never a file someone else wrote
        except Exception:  # noqa: BLE001 - anything odd (the child died, a truncated answer): no answer
            return None

    def order(self, order: dict[str, Any]) -> None:
        """Give the child a part of the input (:meth:`batchlab.metric_split.InputSplit.poll` makes ``order``)."""
        self._tell(json.dumps(order) + "\n")

    def no_order(self) -> None:
        """Tell the child that nothing more is asked of it: it ends."""
        self._tell("")

    def _tell(self, line: str) -> None:
        if self.proc.stdin is None or self.proc.stdin.closed:
            return
        try:
            self.proc.stdin.write(line.encode("utf-8"))
            self.proc.stdin.close()
        except OSError:  # the child has ended: its answers say so
            pass

    def finished(self) -> int | None:
        """Once ordered: the number of blocks the child wrote, or None when it failed (wait for its end)."""
        count = self._read()
        self.proc.wait()
        return count if type(count) is int and self.proc.returncode == 0 else None

    def result(self) -> LedgerHalf | None:
        """The child's half (no order given if none was yet), or None when it failed."""
        half = self.half()
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.no_order()
            self.proc.wait()
            if self.proc.returncode != 0:
                return None
        return half

    def close(self) -> None:
        """Stop the child if it still runs (the caller gave up on it)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None and not pipe.closed:
                try:
                    pipe.close()
                except OSError:
                    pass


def fold_ledger_of(run: Path, *, on_disk: bool, spill_keys: int) -> LedgerHalf:
    """The ledger's half of ``run``'s fold, in this process (what the child does first)."""
    from .metrics import sink_of  # the sink opened as the metrics open it

    with sink_of(run) as sink, FoldStore(on_disk=on_disk, spill_keys=spill_keys) as store:
        return fold_ledger(scan_ledger(RunDir(run).ledger), store, SinkPuts(sink, store))


def main(argv: list[str] | None = None) -> int:
    """The ledger's half to stdout, then the part of the input that one line on stdin may order."""
    from .metrics import sink_of

    args = sys.argv[1:] if argv is None else argv
    run, out = Path(args[0]), sys.stdout.buffer
    with sink_of(run) as sink, FoldStore(on_disk=args[1] == "1", spill_keys=int(args[2])) as store:
        half = fold_ledger(scan_ledger(RunDir(run).ledger), store, SinkPuts(sink, store))
        pickle.dump(half, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()
        line = sys.stdin.readline()
        if not line.strip():
            return 0
        sink.attach(store)
        sink.index_outputs()
        pickle.dump(fold_part(json.loads(line), sink), out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
