"""Ctrl-C and SIGTERM of a pass run from the command line: a graceful stop first, a kill on the second.

Apart from the verbs because it is process-wide state (signal handlers, installed and restored around
one pass) that :func:`batchlab.runner.run_pass` only polls through ``stop=``.
"""

from __future__ import annotations

import signal
import sys
from typing import Any


class StopSignals:
    """Ctrl-C and SIGTERM of ``batchlab run``: the first asks the worker to stop, a second kills it.

    Polled by :func:`batchlab.runner.run_pass` (``stop=``). Outside the main thread
    (a notebook's helper thread) no handler can be installed and nothing changes.
    """

    def __init__(self) -> None:
        self.signal: str | None = None
        self.count = 0
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: Any) -> None:
        self.count += 1
        if self.signal is None:
            self.signal = signal.Signals(signum).name
            print(f"\n{self.signal}: stopping the worker (no new documents; in-flight ones get a few seconds "
                  "to commit). Press Ctrl-C again to kill it now.", file=sys.stderr, flush=True)

    def __call__(self) -> str | None:
        from ..runner import STOP_NOW

        return STOP_NOW if self.count > 1 else self.signal

    def __enter__(self) -> StopSignals:
        import threading

        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._old[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, old in self._old.items():
            signal.signal(signum, old)

    @property
    def exit_code(self) -> int:
        return 128 + int(getattr(signal, self.signal or "SIGINT"))
