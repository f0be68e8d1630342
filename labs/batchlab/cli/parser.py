"""The ``batchlab`` command's parser: every verb, its options and the function it calls."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NoReturn

from ..contract import BatchConfig
from ..defaults import LESSON
from ..errors import KitError, UsageError
from ..faults import CRASH_KINDS
from .commands import (
    cmd_backfill,
    cmd_bench,
    cmd_make_input,
    cmd_metrics,
    cmd_outage,
    cmd_release,
    cmd_run,
    cmd_serve,
    cmd_validate,
)
from .demo_cmd import cmd_demo


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors come out in the unified error structure too."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}", code="usage_error", details={"usage": self.format_usage().strip()},
                         hints=[f"Run `{self.prog} --help`."])


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a rate in [0, 1] (3 % is 0.03)")
    return value


def _window(text: str) -> tuple[float, float]:
    """``START:DURATION`` in seconds, e.g. ``0.5:3``: an outage from 0.5 s after the pass's first service call, for 3 s."""
    try:
        start, duration = (float(part) for part in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not START:DURATION in seconds (e.g. 0.5:3)") from None
    if start < 0 or duration < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: START and DURATION must not be negative")
    return start, duration


def _sizes(text: str) -> list[int]:
    """``200,5000``: the batch sizes of ``bench --scale``."""
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of numbers, e.g. 200,5000") from None
    if not sizes or min(sizes) < 10:
        raise argparse.ArgumentTypeError("every size must be at least 10 documents")
    return sizes


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def _existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise KitError(f"{text!r} is not a file", code="file_not_found", details={"path": text},
                       hints=["Check the path."])
    return path


#: Verbs the front-ends register themselves: name -> (module, function that adds the parser). Imported only
#: when the parser is built, and each module keeps its heavy imports (matplotlib, ipywidgets) inside functions.
EXTENSIONS: dict[str, tuple[str, str]] = {
    "report": ("batchlab.teach.report.build", "add_parser"),
    "check": ("batchlab.teach.selfcheck", "add_parser"),
    "grade": ("batchlab.teach.grading", "add_parser"),
    "dashboard": ("batchlab.teach.dashboard.view", "add_parser"),
    "chaos": ("batchlab.teach.chaos_cmd", "add_parser"),
    "grade-all": ("batchlab.grade.run", "add_parser"),
    "autograder": ("batchlab.grade.autograder", "add_parser"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="batchlab", description="Lesson 15 lab kit: batch processing with checkpoint and resume.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--impl", type=_existing_file, default=None,
                       help="implementation file (default: the reference if present, else the student module)")
        p.add_argument("--seed", type=int, default=LESSON.seed, help="seed of the fault plan (replayable)")
        p.add_argument("--fault-rate", type=_rate, default=LESSON.fault_rate, help="transient fault rate per call (0.01-0.05)")
        p.add_argument("--concurrency", type=_positive, default=LESSON.concurrency)
        p.add_argument("--latency-ms", type=float, default=LESSON.latency_ms, help="median service latency")

    p = sub.add_parser("demo", help="first run with faults and a crash, then resume; metrics against thresholds")
    p.add_argument("--input", type=Path, default=None, help="batch file (default: examples/input_example.json)")
    p.add_argument("--docs", type=_positive, default=None, help="generate an input of N documents instead")
    p.add_argument("--crash", choices=CRASH_KINDS, default="during_call")
    p.add_argument("--at", type=_positive, default=None, help="crash at the K-th call or commit")
    p.add_argument("--run-dir", type=Path, default=None)
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    common(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("run", help="run one pass in a run directory (run it again to resume)")
    p.add_argument("--input", type=Path, default=Path("examples/input_example.json"))
    p.add_argument("--run-dir", type=Path, default=Path("runs/manual"))
    p.add_argument("--batch-id", default=None)
    p.add_argument("--crash", choices=CRASH_KINDS, default="none")
    p.add_argument("--at", type=_positive, default=None)
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--wait", type=float, default=None,
                   help="seconds to wait for a run directory another run holds, then refuse with run_dir_busy "
                        "(default 3)")
    p.add_argument("--outage", type=_window, action="append", default=[], metavar="START:DURATION",
                   help="the service is unreachable from START s after the pass's first service call, for DURATION s (repeatable)")
    p.add_argument("--permanent-rate", type=_rate, default=0.0,
                   help="share of documents the service fails for good (a parse error): they take the degraded "
                        "path, for `batchlab backfill` to upgrade later")
    p.add_argument("--stuck-rate", type=_rate, default=0.0,
                   help="share of calls that hang until the processor cancels them (its per-call deadline)")
    p.add_argument("--no-breaker", action="store_true",
                   help="turn the processor's circuit breaker off (config.breaker_failures = 0), to compare")
    p.add_argument("--call-timeout", type=float, default=BatchConfig.call_timeout,
                   help="per-call deadline in seconds, 0 for none (config.call_timeout)")
    p.add_argument("--no-metrics", action="store_true",
                   help="do not print the run's metrics table after the pass (a fold of the whole run: minutes at a "
                        "million documents); `batchlab metrics RUN_DIR` prints it when wanted")
    common(p)
    p.set_defaults(func=cmd_run)
    from .fleet_cmds import add_arguments as add_fleet_arguments

    add_fleet_arguments(p, sub)

    p = sub.add_parser("outage", help="take the service of a running batch down, or bring it back (live)")
    p.add_argument("run_dir", type=Path)
    p.add_argument("state", choices=["on", "off", "status"], help="on: unreachable; off: reachable again")
    p.set_defaults(func=cmd_outage)

    p = sub.add_parser("backfill", help="one more pass that redoes a run's degraded documents in full (后续标记待补)")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--wait", type=float, default=None,
                   help="seconds to wait for a run directory another run holds, then refuse with run_dir_busy "
                        "(default 3)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.set_defaults(func=cmd_backfill)

    p = sub.add_parser("metrics", help="the metrics of a run directory (or of a batch in a PostgreSQL store)")
    p.add_argument("run_dir", type=Path, nargs="?")
    p.add_argument("--json", action="store_true")
    from .store_cmds import add_store_arguments

    add_store_arguments(p)
    p.set_defaults(func=cmd_metrics)

    p = sub.add_parser("validate", help="check a batch file and summarize it")
    p.add_argument("input", type=Path)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("make-input", help="write a synthetic batch of N documents")
    p.add_argument("--docs", type=_positive, required=True)
    p.add_argument("--seed", type=int, default=LESSON.seed)
    p.add_argument("--out", default=None)
    p.add_argument("--batch-id", default="batch-001")
    p.add_argument("--min-bytes", type=_positive, default=100)
    p.add_argument("--max-bytes", type=_positive, default=50_000)
    p.add_argument("--force", action="store_true")
    p.add_argument("--format", choices=["json", "jsonl"], default=None,
                   help="json (an object with `documents`) or jsonl (a header line, then a document per line); "
                        "default: from the --out suffix, else json")
    p.set_defaults(func=cmd_make_input)

    p = sub.add_parser("release", help="generate the student skeleton from the solution")
    p.add_argument("--check", action="store_true",
                   help="fail if the skeleton is stale (neither the committed nor the working file is what the "
                        "solution gives)")
    p.add_argument("--out", default=None,
                   help="write a student distribution into this new folder (and nothing else: the student file "
                        "of this checkout is left alone)")
    p.add_argument("--force", action="store_true",
                   help="overwrite a student file that holds edits (a copy goes to runs/release-backup/)")
    p.set_defaults(func=cmd_release)

    p = sub.add_parser("bench", help="benchmark the reference processor (figures, not pass/fail)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    p.add_argument("--repeat", type=_positive, default=1, help="runs per figure; medians are reported")
    p.add_argument("--impl", type=_existing_file, default=None)
    p.add_argument("--scale", action="store_true",
                   help="what N documents cost the kit (10 000 and 100 000): walls, peak RSS, sizes, resume, metrics")
    p.add_argument("--million", action="store_true", help="with --scale: 1 000 000 documents too (about an hour)")
    p.add_argument("--sizes", type=_sizes, default=None, help="with --scale: the N to measure, e.g. 200,5000")
    p.add_argument("--keep", default=None, help="with --scale: keep the inputs and run directories in this folder")
    p.add_argument("--one-pass", action="store_true",
                   help="with --scale: the first pass is the one killed at 99 %%, resumed, rerun on one run directory "
                        "(half the work, for a million)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("serve", help="the batch service: HTTP API, WebSocket progress, task page")
    from ..serve.server import add_arguments  # no web framework imported until the verb runs

    add_arguments(p)
    p.set_defaults(func=cmd_serve)

    import importlib

    for module_name, fn_name in EXTENSIONS.values():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        getattr(module, fn_name)(sub)
    return parser
