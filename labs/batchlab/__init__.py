"""batchlab: the Lesson 15 lab kit harness ("批量断点续传").

Students never edit this package. It gives the student's document processor
everything around it: the batch input and its validation, the pipeline from
earlier lessons (cleaning, chunking, embedding, the degraded path), a simulated
external service with seeded faults, a SQLite output sink, an append-only
ledger of every side effect, the metrics computed from that ledger, and a runner
that executes any implementation file in a child process that can be killed.

The harness depends on nothing else in the kit; the grader, the notebooks and
the dashboard depend on it.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "check", "load_student"]


def __getattr__(name: str) -> object:
    """Lazy exports for notebooks (``from batchlab import check``) without importing them on every use."""
    if name in ("check", "load_student"):
        from . import checks

        return getattr(checks, name)
    raise AttributeError(f"module 'batchlab' has no attribute {name!r}")
