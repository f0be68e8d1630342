"""batchlab: the Lesson 15 lab kit harness ("批量断点续传").

Students never edit this package. It gives the student's document processor
everything around it, and it is built in rooms by role (README "Architecture"):

The harness (the core), flat at the top, in the order a document travels:

* ``examples``   - synthetic batch inputs (``batchlab make-input``, ``examples/input_example.json``)
* ``documents``  - the input's import surface: re-exports ``docmodel`` (one document: parse, identity),
  ``batchfile`` (load and validate a batch file), ``batchstream`` (the same file one document at a
  time: JSON or JSON Lines, over ``streamreaders`` and ``jsonwindow``) and ``inventory`` (entries
  parsed once, folded by identity)
* ``contract``   - what ``process_documents_batch`` receives and returns: config, states, report
* ``runner``     - runs an implementation file in child processes: a pass, a kill, the resume
* ``rundir``     - the run directory's files, named once (spec, ledger, sink, state, lock, pass output)
* ``worker``     - the child process of one pass: builds the service and the sink, calls the student
* ``pipeline``   - clean, chunk, embed and the degraded path; the fault-free oracle
* ``faults``     - the seeded fault plan and the crash points
* ``service``    - the simulated external service (latency, transient and permanent faults)
* ``sink``       - the SQLite output store, keyed by idempotency key
* ``ledger``     - the append-only record of every side effect: the ground truth (``Ev``, ``FIELDS``)
* ``ledger_views`` - the ledger read pass by pass: usable events, how a pass ended, per-pass figures
* ``metrics``    - the lesson's figures, computed from the ledger and the sink
* ``metric_table`` - the metric table's rows (thresholds, then reported figures) and its text form
* ``thresholds`` - the thresholds those figures are held to (``thresholds.toml``)
* ``resources``  - psutil samples of a running worker (CPU, memory, open files, disk) written to the ledger

and around them: ``errors`` (the unified error shape), ``steps`` (the lesson's step names),
``paths`` (where the kit's files are), ``defaults`` (the lesson's seed, fault rate, concurrency, latency),
``host`` (platform checks, capabilities), ``childproc`` (a child's limits, session, group kill, death with
its parent), ``lifeline`` (a worker dies with its parent),
``runlock`` (one worker per run directory: the run directory's lock), ``testing`` (the shared test doubles).

The front-ends, each in a room of its own, importing the core and never each other:

* ``teach/``     - notebook (the step notebooks' helpers), selfcheck (``check()``), grading (``batchlab grade``), demo,
  dashboard/ (board, timeline, model, render, view), chaos (+ chaos_result), report/ (views, markdown, style,
  plots, build), bench, release
* ``serve/``     - the batch service (``batchlab serve``): manager (states, actions), app (HTTP, WebSocket),
  progress (the ledger fold), page (the task page), store, settings
* ``grade/``     - class grading (``batchlab grade-all``, ``batchlab autograder``): submissions, children, gradebook,
  classreport, run, autograder, gradescope_scripts, gradescope

``cli`` is the entry point over all of them (``batchlab VERB``). The harness depends on nothing
else in the kit; the grader depends on the harness only (``tests/test_architecture.py``).
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "check", "load_student"]


def __getattr__(name: str) -> object:
    """Lazy exports for notebooks (``from batchlab import check``) without importing them on every use."""
    if name == "check":
        from .teach.selfcheck import check

        return check
    if name == "load_student":
        from .teach.notebook import load_student

        return load_student
    raise AttributeError(f"module 'batchlab' has no attribute {name!r}")
