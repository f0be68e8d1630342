"""Benchmark of ``batchlab grade-all`` (a benchmark, not a test): submissions graded per minute by --jobs.

Builds a class of ``--submissions`` modules (the reference, the skeleton and broken variants of
``tests/mutants/``, built as ``tests/grader/grader_runs.py`` builds them, cycled), grades it from scratch with
``batchlab grade-all --jobs N`` for each N, ``--repeat`` times, and prints the median submissions per minute
for each N, with the machine's load average (the figure moves with whatever else the machine runs).

    python scripts/bench_grade_all.py                       # 8 submissions, --jobs 1..4, public grader
    python scripts/bench_grade_all.py --jobs 1 2 --repeat 3 --hidden
    python scripts/bench_grade_all.py --jobs 2 --check-equal   # also: every score equals the file graded alone
    python scripts/bench_grade_all.py --submissions 40 --jobs 2 --with-hostile --hidden --check-equal

``--with-hostile`` puts the acceptance class of issue 12 together: besides the cycled reference, skeleton and
mutants, every hostile fixture of ``tests/grader/hostile/`` and three unreadable uploads (an empty file, a binary
file, a broken zip). An unreadable upload must get a 0 row with its reason; every ``.py`` row must equal the file
graded alone.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "grader"))

from batchlab.paths import solution_module  # noqa: E402
from batchlab.teach.release import render_student  # noqa: E402
from grader_runs import MUTANTS, build_mutant, load_mutant  # noqa: E402

HOSTILE = ROOT / "tests" / "grader" / "hostile"
#: Uploads that cannot be read as a submission: (file name, bytes). Each must score 0 with its reason.
UNREADABLE = (("empty.py", b""), ("binary.py", bytes(range(256)) * 8), ("badzip.zip", b"PK\x03\x04 not a zip"))


def hostile_fixtures() -> list[Path]:
    return sorted(p for p in HOSTILE.iterdir() if (p / "document_processor.py").is_file())


def add_hostile(folder: Path, start: int) -> list[str]:
    """Every hostile fixture as ``NN-hostile-NAME.py`` and the unreadable uploads; returns their ids."""
    ids = []
    fixtures = hostile_fixtures()
    for k, fixture in enumerate(fixtures):
        ident = f"{start + k:02d}-hostile-{fixture.name}"
        (folder / f"{ident}.py").write_bytes((fixture / "document_processor.py").read_bytes())
        ids.append(ident)
    for k, (name, data) in enumerate(UNREADABLE, start=start + len(fixtures)):
        stem, suffix = name.rsplit(".", 1)
        ident = f"{k:02d}-unreadable-{stem}"
        (folder / f"{ident}.{suffix}").write_bytes(data)
        ids.append(ident)
    return ids


def build_class(folder: Path, count: int) -> list[str]:
    """``count`` submissions: reference, skeleton, then mutants (cycled); returns their ids."""
    solution = solution_module().read_text(encoding="utf-8")
    sources = [("reference", solution), ("skeleton", render_student(solution_module()))]
    for name in MUTANTS:
        module = load_mutant(name)
        if getattr(module, "GRADER_ARGS", None):
            continue  # mutants graded with special options (the hang) would not be graded as a class is
        sources.append((name, build_mutant(module, solution)))
    folder.mkdir(parents=True)
    ids = []
    for i in range(count):
        name, source = sources[i % len(sources)]
        ident = f"{i:02d}-{name}"
        (folder / f"{ident}.py").write_text(source, encoding="utf-8")
        ids.append(ident)
    return ids


def check_equal(subs: Path, out: Path, hidden: bool) -> list[str]:
    """Students whose gradebook row differs from ``batchlab grade --impl FILE`` run on the file alone."""
    with (out / "gradebook.csv").open(encoding="utf-8") as fh:
        book = {row["student"]: row for row in csv.DictReader(fh)}
    differ = []
    for student, row in sorted(book.items()):
        if not (subs / f"{student}.py").is_file() or "-unreadable-" in student:
            zero = float(row["total"]) == 0
            print(f"{student}: grade-all {row['total']} (unreadable upload: must be 0): {'same' if zero else 'DIFFERENT'}",
                  flush=True)
            if not zero:
                differ.append(student)
            continue
        results = out.parent / "alone" / student / "results.json"
        cmd = [sys.executable, "-m", "batchlab", "grade", "--impl", str(subs / f"{student}.py"), "--results",
               str(results)] + (["--hidden"] if hidden else [])
        subprocess.run(cmd, capture_output=True, timeout=1800, cwd=out.parent)
        alone = json.loads(results.read_text(encoding="utf-8"))
        points = {t["number"]: t["score"] for t in alone["tests"]}
        same = float(row["total"]) == alone["score"] and all(float(row[n]) == v for n, v in points.items())
        print(f"{student}: grade-all {row['total']}, alone {alone['score']:g}: {'same' if same else 'DIFFERENT'}",
              flush=True)
        if not same:
            differ.append(student)
    return differ


def one_run(subs: Path, out: Path, jobs: int, hidden: bool) -> float:
    cmd = [sys.executable, "-m", "batchlab", "grade-all", str(subs), "--out", str(out), "--jobs", str(jobs)]
    started = time.monotonic()
    subprocess.run(cmd + (["--hidden"] if hidden else []), check=True, capture_output=True, timeout=7200)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", type=int, default=8)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--hidden", action="store_true")
    parser.add_argument("--with-hostile", action="store_true",
                        help="add every hostile fixture and three unreadable uploads (counted in --submissions)")
    parser.add_argument("--check-equal", action="store_true",
                        help="after the last run, grade each file alone and compare with the gradebook")
    args = parser.parse_args()
    figures = {}
    with tempfile.TemporaryDirectory(prefix="bench-grade-all-") as tmp:
        subs = Path(tmp) / "subs"
        extra = len(hostile_fixtures()) + len(UNREADABLE) if args.with_hostile else 0
        ids = build_class(subs, args.submissions - extra)
        if args.with_hostile:
            ids += add_hostile(subs, len(ids))
        for jobs in args.jobs:
            rates = []
            for k in range(args.repeat):
                load = os.getloadavg()[0]
                seconds = one_run(subs, Path(tmp) / f"out-{jobs}-{k}", jobs, args.hidden)
                rates.append(60.0 * len(ids) / seconds)
                print(f"--jobs {jobs} run {k + 1}: {len(ids)} submissions in {seconds:.1f} s = "
                      f"{rates[-1]:.1f}/min (load average before: {load:.2f})", flush=True)
            figures[jobs] = round(statistics.median(rates), 2)
        differ = check_equal(subs, Path(tmp) / f"out-{jobs}-0", args.hidden) if args.check_equal else []
    print(json.dumps({"submissions": args.submissions, "hidden": args.hidden, "repeat": args.repeat,
                      "cpus": os.cpu_count(), "per_minute_median_by_jobs": figures,
                      **({"differ_from_alone": differ} if args.check_equal else {})}))
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
