"""``batchlab grade-all SUBMISSIONS --out DIR``: grade a class, resumably, in parallel, one submission per child.

Layout of ``DIR``::

    gradebook.csv            one row per student (status, total, max, reason, every test's points)
    class-report.md          pass rates, invariants broken, plots (Simplified Chinese)
    plots/*.png
    students/<id>/results.json, feedback.txt     the finished gradings (results.json last: the done mark)
    work/<id>/               the submission's own copy, the grader's output and results (its run folders
                             are removed after grading unless --keep-runs)

Killed and started again, it grades only the students without a finished result for the same submission
(sha256); unreadable entries are recorded at once, with the reason, and never stop the class.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .children import Child, grade_verb, start
from .gradebook import gradebook_csv, load_result, read_grader_results, save_result, write_atomic, zero_result
from .submissions import MODULE_NAME, Submission, Unreadable, discover

MARKER = ".batchlab-grade-all"
DEFAULT_TIMEOUT_S = 900.0
#: Grader folders that hold run directories (tens of MB per student): removed after grading by default.
RUN_FOLDERS = ("runs", "runs-grader", "work", "work-grader")


def default_jobs() -> int:
    return max(1, min(2, os.cpu_count() or 1))


@dataclass
class Settings:
    """What ``grade-all`` was asked for."""

    submissions: Path
    out: Path
    jobs: int = field(default_factory=default_jobs)
    hidden: bool = False
    timeout_s: float = DEFAULT_TIMEOUT_S
    keep_runs: bool = False
    grader_options: Sequence[str] = ()
    quiet: bool = False

    def __post_init__(self) -> None:
        # Absolute: every grading child runs in its own work folder, where a relative path means something else.
        self.submissions = Path(self.submissions).absolute()
        self.out = Path(self.out).absolute()


@dataclass
class Outcome:
    """What a ``grade-all`` run did: students graded now, skipped as already finished, unreadable."""

    graded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)


def check_settings(s: Settings) -> None:
    """Bad arguments give the unified error (exit 2) before anything is written."""
    if not s.submissions.is_dir():
        raise UsageError(f"{s.submissions} is not a folder of submissions", code="submissions_not_found",
                         details={"submissions": str(s.submissions)},
                         hints=["Give a folder with one entry per student: ID.py, ID/ (holding "
                                f"{MODULE_NAME}) or ID.zip."])
    if not any(not p.name.startswith(".") for p in s.submissions.iterdir()):
        raise UsageError(f"{s.submissions} holds no submission", code="no_submissions",
                         details={"submissions": str(s.submissions)}, hints=["Check the folder."])
    if s.jobs < 1:
        raise UsageError("--jobs must be at least 1", code="usage_error", details={"jobs": s.jobs})
    if s.timeout_s <= 0:
        raise UsageError("--timeout must be positive", code="usage_error", details={"timeout": s.timeout_s})
    if s.out.exists() and not s.out.is_dir():
        raise UsageError(f"{s.out} exists and is not a folder", code="out_not_a_folder",
                         details={"out": str(s.out)}, hints=["Choose another --out."])
    if s.out.is_dir() and any(s.out.iterdir()) and not (s.out / MARKER).exists():
        raise UsageError(f"{s.out} is not empty and is not a grade-all output", code="out_not_empty",
                         details={"out": str(s.out)},
                         hints=["Choose a new --out, or the folder of an earlier grade-all to resume it."])
    inside = s.out.resolve()
    if inside == s.submissions.resolve() or s.submissions.resolve() in inside.parents:
        raise UsageError("--out may not be inside the submissions folder", code="usage_error",
                         details={"out": str(s.out)}, hints=["Put --out next to the submissions folder."])


def grade_all(s: Settings, *, clock: Callable[[], float] = time.monotonic,
              say: Callable[[str], None] | None = None) -> Outcome:
    """Grade every submission not yet graded, write the gradebook and the class report; return what happened."""
    check_settings(s)
    say = say or (lambda text: None if s.quiet else print(text, file=sys.stderr, flush=True))
    s.out.mkdir(parents=True, exist_ok=True)
    (s.out / MARKER).touch()
    outcome = Outcome()
    pending: list[Submission] = []
    for item in discover(s.submissions):
        if isinstance(item, Unreadable):
            data = zero_result(status="unreadable", reason=item.reason, sha256=None)
            save_result(s.out, item.student, data, f"{item.entry.name}: {item.reason}\n")
            outcome.unreadable.append(item.student)
            outcome.results[item.student] = data
            continue
        done = load_result(s.out, item.student)
        if done is not None and done["extra_data"]["grade_all"].get("sha256") == item.sha256:
            outcome.skipped.append(item.student)
            outcome.results[item.student] = done
        else:
            pending.append(item)
    say(f"grade-all: {len(pending)} to grade, {len(outcome.skipped)} already graded, "
        f"{len(outcome.unreadable)} unreadable; {s.jobs} at a time")
    _run_pending(s, pending, outcome, clock=clock, say=say)
    write_outputs(s.out, outcome.results)
    return outcome


def _run_pending(s: Settings, pending: list[Submission], outcome: Outcome, *, clock: Callable[[], float],
                 say: Callable[[str], None]) -> None:
    """Keep ``s.jobs`` children running until every pending submission has a result."""
    queue = list(pending)
    running: dict[str, tuple[Child, Submission]] = {}
    began = clock()
    while queue or running:
        while queue and len(running) < s.jobs:
            sub = queue.pop(0)
            running[sub.student] = (_start(s, sub), sub)
        time.sleep(0.2)
        for student, (child, sub) in list(running.items()):
            code = child.poll(time.monotonic())
            if code is None:
                continue
            del running[student]
            data = _finish(s, sub, child, code)
            outcome.graded.append(student)
            outcome.results[student] = data
            say(progress_line(len(outcome.graded), len(pending), student, data, clock() - began, s.jobs))


def progress_line(done: int, total: int, student: str, data: dict[str, Any], elapsed: float, jobs: int) -> str:
    """``[3/8] alice: 117/122 graded (24 s); ETA 1 min 12 s``: the ETA from the mean time per submission so far."""
    meta = data["extra_data"]["grade_all"]
    left = total - done
    eta = elapsed / done * left if done else 0.0
    score = f"{float(data['score']):g}/{float(data['max_score']):g}" if meta["status"] == "graded" else "0"
    return (f"[{done}/{total}] {student}: {score} {meta['status']} ({meta['duration_s']:.0f} s); "
            f"elapsed {_span(elapsed)}, ETA {_span(eta)}")


def _span(seconds: float) -> str:
    minutes, sec = divmod(int(round(seconds)), 60)
    return f"{minutes} min {sec} s" if minutes else f"{sec} s"


def _start(s: Settings, sub: Submission) -> Child:
    """A fresh work folder with the submission's own copy, and its grading child."""
    work = s.out / "work" / sub.student
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    impl = work / MODULE_NAME
    impl.write_text(sub.source, encoding="utf-8")
    results = work / "grader-results" / "results.json"
    # Where the grader sandboxes student code, no child sees the class: every submission, every other
    # student's work folder and result (the grader re-exposes this student's own module and run folders).
    hide = ["--sandbox-hide", str(s.submissions.resolve()), "--sandbox-hide", str(s.out.resolve())]
    cmd = grade_verb(impl, results, hidden=s.hidden, grader_options=[*hide, *s.grader_options])
    return start(sub.student, cmd, cwd=work, timeout_s=s.timeout_s)


def _finish(s: Settings, sub: Submission, child: Child, code: int) -> dict[str, Any]:
    """Turn a finished child into the student's result (saved), whatever way it ended."""
    duration = time.monotonic() - child.started
    work = s.out / "work" / sub.student
    output = child.log.read_text(encoding="utf-8", errors="replace")
    results = work / "grader-results" / "results.json"
    meta: dict[str, Any] = {"sha256": sub.sha256, "duration_s": round(duration, 2), "returncode": code}
    data: dict[str, Any]
    if child.timed_out:
        reason = (f"timed out: grading took more than {s.timeout_s:g} s (the grader's own per-scenario "
                  "timeouts did not end it); scored 0")
        data = zero_result(status="timeout", reason=reason, sha256=sub.sha256, duration_s=duration)
    elif (graded := read_grader_results(results)) is not None:
        data = graded
        data["extra_data"]["grade_all"] = {"status": "graded", "reason": None, **meta}
    else:
        tail = " | ".join(output.strip().splitlines()[-3:]) or "none"
        how = f"was killed by signal {-code}" if code < 0 else f"ended with exit {code}"
        reason = f"the grader {how} without a finished results file (scored 0); its last output: {tail}"
        data = zero_result(status="crashed", reason=reason[:500], sha256=sub.sha256, duration_s=duration)
    data["extra_data"]["grade_all"].update(meta)
    save_result(s.out, sub.student, data, output)
    if not s.keep_runs:
        for name in RUN_FOLDERS:
            shutil.rmtree(work / "grader-results" / name, ignore_errors=True)
    return data


def write_outputs(out: Path, results: dict[str, dict[str, Any]]) -> None:
    """The gradebook and the class report, from every student's result."""
    write_atomic(out / "gradebook.csv", gradebook_csv(results))
    from .classreport import write_class_report  # matplotlib is imported only here

    write_class_report(out, results)


def cmd_grade_all(args: argparse.Namespace) -> int:
    options = shlex.split(args.grader_args)
    s = Settings(submissions=args.submissions, out=args.out, jobs=args.jobs, hidden=args.hidden,
                 timeout_s=args.timeout, keep_runs=args.keep_runs, grader_options=options)
    outcome = grade_all(s)
    graded = [d for d in outcome.results.values() if d["extra_data"]["grade_all"]["status"] == "graded"]
    print(f"{len(outcome.results)} students: {len(graded)} graded ({len(outcome.graded)} now, "
          f"{len(outcome.skipped)} earlier), {len(outcome.results) - len(graded)} scored 0 without grading; "
          f"see {s.out / 'gradebook.csv'} and {s.out / 'class-report.md'}")
    return 0


def _jobs(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("grade-all", help="grade a folder of submissions: gradebook, feedback, class report")
    p.add_argument("submissions", type=Path, help="one entry per student: ID.py, ID/ or ID.zip")
    p.add_argument("--out", type=Path, required=True, help="output folder (an earlier one resumes)")
    p.add_argument("--jobs", type=_jobs, default=default_jobs(), help="submissions graded at once (default "
                                                                       "min(2, cpus))")
    p.add_argument("--hidden", action="store_true", help="also run the hidden scenarios")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                   help=f"seconds one submission may take before it scores 0 (default {DEFAULT_TIMEOUT_S:g})")
    p.add_argument("--keep-runs", action="store_true", help="keep the grader's run folders (tens of MB each)")
    p.add_argument("--grader-args", default="", metavar="'OPTIONS'",
                   help="options passed to every grader run, one string, e.g. '--step checkpoint --jobs 2'")
    p.set_defaults(func=cmd_grade_all)
