"""``batchlab grade``: run the grader (``pytest grader``) on an implementation file.

A thin wrapper, so that a TA or a student can grade without remembering pytest's
options::

    batchlab grade [--impl PATH] [--hidden] [--step STEP] [--results FILE] [--exec] [-- GRADER OPTIONS]

It runs ``python -m pytest <kit_root>/grader ...`` in a child process (the
grader itself sandboxes the student's code) and returns pytest's exit code.
The harness does not import the grader: this only starts it. With ``--exec`` this
process *becomes* the grader (``os.execv``): what ``batchlab grade-all`` and the
Gradescope autograder start, so that their timeout, kill and die-with-parent reach
the grader itself and not a wrapper around it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import UsageError
from ..paths import kit_root


def grader_command(*, impl: Path | None = None, hidden: bool = False, step: str | None = None,
                   results: Path | None = None, grader_dir: Path | None = None,
                   extra: Sequence[str] = ()) -> list[str]:
    """The pytest command line that grades ``impl`` (the default implementation when None).

    The one builder of the grader's command line: ``batchlab grade`` runs it as is, and the
    notebooks' ``check()`` (:mod:`batchlab.teach.selfcheck`) runs it per step with ``--color=no``,
    so a TA and a student always run the same grader the same way.
    """
    grader = Path(grader_dir) if grader_dir is not None else kit_root() / "grader"
    # nbval (a pytest plugin of the kit) is not needed by the grader and costs seconds at start-up;
    # no cache is written into the kit.
    cmd = [sys.executable, "-m", "pytest", str(grader), "-p", "no:nbval", "-p", "no:cacheprovider", "-q"]
    if impl is not None:
        cmd += ["--impl", str(Path(impl).resolve())]
    if hidden:
        cmd.append("--hidden")
    if step is not None:
        cmd += ["--step", step]
    if results is not None:
        cmd += ["--results", str(Path(results).resolve())]
    return cmd + list(extra)


def run_grade(*, impl: Path | None = None, hidden: bool = False, step: str | None = None,
              results: Path | None = None, extra: Sequence[str] = (), replace_process: bool = False) -> int:
    """Grade and return pytest's exit code (0: every graded test passed); ``replace_process``: exec it instead."""
    if not (kit_root() / "grader").is_dir():
        raise UsageError("this copy of the kit has no grader/ folder", code="grader_missing",
                         details={"kit_root": str(kit_root())}, hints=["Run it from a full copy of the kit."])
    if impl is not None and not Path(impl).is_file():
        raise UsageError(f"{impl} is not a file", code="file_not_found", details={"impl": str(impl)},
                         hints=["Point --impl at a document_processor.py."])
    cmd = grader_command(impl=impl, hidden=hidden, step=step, results=results, extra=extra)
    if replace_process:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(cmd[0], cmd)
    return subprocess.call(cmd)


def cmd_grade(args: argparse.Namespace) -> int:
    extra = [a for a in args.grader_options if a != "--"]
    if extra and not extra[0].startswith("-"):  # `batchlab grade FILE`: a path pytest would take for a test path
        raise UsageError(f"unexpected argument {extra[0]!r}", code="usage_error", details={"argument": extra[0]},
                         hints=["The file to grade goes after --impl; grader options go after --, e.g. "
                                "`batchlab grade --impl FILE -- --timeout-scale 2`."])
    return run_grade(impl=args.impl, hidden=args.hidden, step=args.step, results=args.results, extra=extra,
                     replace_process=args.exec)


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("grade", help="grade an implementation with the pytest grader (score table, "
                                            "results.json)")
    p.add_argument("--impl", type=Path, default=None,
                   help="implementation file (default: $BATCHLAB_IMPL, else the student module)")
    p.add_argument("--hidden", action="store_true", help="also run the hidden scenarios (grading)")
    p.add_argument("--step", default=None, help="only one step: checkpoint|idempotency|backoff|concurrency|"
                                                "resume|metrics or 01..06")
    p.add_argument("--results", type=Path, default=None,
                   help="results.json path (default grader-results/results.json)")
    p.add_argument("--exec", action="store_true",
                   help="replace this process with the grader (for a supervisor that times out or kills it)")
    p.add_argument("grader_options", nargs="*", metavar="-- GRADER OPTIONS",
                   help="more options for the grader after --, e.g. -- --timeout-scale 2 --jobs 2")
    p.set_defaults(func=cmd_grade)
