"""The lesson's defaults, written once: seed, fault rate, concurrency, service latency, batch size.

``batchlab demo``/``run``/``chaos``, :func:`batchlab.teach.demo.run_demo` and the teacher
dashboard start from these numbers, so that the figures a teacher shows on the projector, the
ones a student gets from ``batchlab demo`` and the ones the notebooks quote are the same run.
A front-end that needs another value (the dashboard's slower service, so that a teacher can
press *Crash now* in the middle) overrides one field and says why.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LessonDefaults:
    """The numbers of the lesson's standard run."""

    #: Seed of the fault plan (and of generated inputs): a run is replayable.
    seed: int = 15
    #: Transient fault rate per service call (3 %, within the lesson's 1-5 %).
    fault_rate: float = 0.03
    #: Documents in flight at once.
    concurrency: int = 8
    #: The simulated service's median latency, in milliseconds.
    latency_ms: float = 10.0
    #: Documents in a generated batch (the dashboard's; the demo uses ``examples/input_example.json``).
    documents: int = 120


#: The lesson's standard run.
LESSON = LessonDefaults()
