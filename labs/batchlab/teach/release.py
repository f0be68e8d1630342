"""One source, two versions: generate the student skeleton from the reference solution.

The reference marks what students write with regions (the convention of
nbgrader's ``ClearSolutions`` and otter-grader's ``replace_solutions``)::

    # BEGIN SOLUTION step 02: normalize id and content, hash, join the parts
    ...reference code...
    # END SOLUTION

:func:`strip_solutions` is a pure function over lines: each region becomes, at
the marker's indentation, a ``# TODO`` naming the lesson step and a
``raise NotImplementedError(...)`` that says what to build. Nested, unclosed or
stray markers are refused with the line number, so a broken solution file can
never silently leak code to students.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import KitError

BEGIN = re.compile(r"^(?P<indent>[ \t]*)#\s*BEGIN SOLUTION\b\s*(?P<hint>.*)$")
END = re.compile(r"^[ \t]*#\s*END SOLUTION\b")

#: What a student distribution contains (relative to the kit root). Its README is the student README.
DISTRIBUTION = (
    "pyproject.toml", "checklist.md", ".gitignore",
    "labs/batchlab", "labs/student", "grader", "notebooks", "templates", "examples",
    "binder", ".devcontainer",  # the hosted setup (Binder, JupyterHub, dev containers) comes along
    "docs",  # the design page the code's comments cite
)
#: The student distribution's README (its root README.md), kept beside the student module.
STUDENT_README = Path("labs/student/README.md")
#: The kit's own tests that come with a distribution: the harness, which needs no solution
#: (``pytest`` in a distribution checks the installation; ``pytest grader`` grades the student).
DISTRIBUTION_TESTS = (
    "tests/conftest.py", "tests/batchlab/test_documents.py", "tests/batchlab/test_faults.py",
    "tests/batchlab/test_ledger.py", "tests/batchlab/test_pipeline.py", "tests/batchlab/test_service.py",
    "tests/batchlab/test_sink.py", "tests/batchlab/test_contract.py", "tests/batchlab/test_examples.py",
    "tests/batchlab/test_metrics.py",
)
#: Never in a student distribution: hidden scenarios and anything of the solution.
EXCLUDED_PARTS = ("hidden", "__pycache__", ".ipynb_checkpoints")


class ReleaseError(KitError):
    default_code = "release_error"


def strip_solutions(lines: Iterable[str], *, source: str = "<solution>") -> list[str]:
    """Replace every solution region by a TODO and ``raise NotImplementedError``; refuse bad markers."""
    out: list[str] = []
    open_at: int | None = None
    regions = 0
    for number, line in enumerate(lines, start=1):
        begin = BEGIN.match(line)
        if begin:
            if open_at is not None:
                raise ReleaseError(
                    f"{source}:{number}: nested BEGIN SOLUTION (region opened at line {open_at})",
                    code="nested_region", details={"file": source, "line": number, "opened_at": open_at},
                    hints=["Close the first region with # END SOLUTION before opening another."])
            open_at = number
            regions += 1
            indent = begin.group("indent")
            hint = begin.group("hint").strip() or "complete this part"
            text = hint if hint.lower().startswith("step") else f"step ?: {hint}"
            newline = "\n" if line.endswith("\n") else ""
            out.append(f"{indent}# TODO {text}{newline}")
            out.append(f"{indent}raise NotImplementedError({('TODO ' + text)!r}){newline}")
            continue
        if END.match(line):
            if open_at is None:
                raise ReleaseError(
                    f"{source}:{number}: END SOLUTION without BEGIN SOLUTION",
                    code="stray_end", details={"file": source, "line": number},
                    hints=["Remove the stray marker or add its BEGIN SOLUTION."])
            open_at = None
            continue
        if open_at is None:
            out.append(line)
    if open_at is not None:
        raise ReleaseError(
            f"{source}:{open_at}: BEGIN SOLUTION is never closed",
            code="unclosed_region", details={"file": source, "line": open_at},
            hints=["Add # END SOLUTION at the end of the region."])
    if regions == 0:
        raise ReleaseError(f"{source}: no solution regions found", code="no_regions",
                           details={"file": source}, hints=["Mark the student's work with # BEGIN SOLUTION."])
    return out


def render_student(solution: Path) -> str:
    text = solution.read_text(encoding="utf-8")
    return "".join(strip_solutions(text.splitlines(keepends=True), source=str(solution)))


@dataclass(frozen=True)
class ReleaseResult:
    student: Path
    changed: bool
    out_dir: Path | None = None
    backup: Path | None = None
    note: str = ""


def committed_text(root: Path, rel: Path) -> str | None:
    """The file as committed at ``HEAD`` in the git repository at ``root`` (None without git or commit)."""
    try:
        done = subprocess.run(["git", "-C", str(root), "show", f"HEAD:{rel.as_posix()}"],
                              capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    try:
        return done.stdout.decode("utf-8")
    except UnicodeDecodeError:
        return None


def skeleton_state(root: Path) -> tuple[str, str | None, str | None]:
    """``(wanted, working, committed)``: the skeleton the solution gives, and the two copies of it we have."""
    from ..paths import SOLUTION_MODULE, STUDENT_MODULE

    wanted = render_student(root / SOLUTION_MODULE)
    student = root / STUDENT_MODULE
    working = student.read_text(encoding="utf-8") if student.exists() else None
    return wanted, working, committed_text(root, STUDENT_MODULE)


def release(*, root: Path, check: bool = False, out: Path | None = None, force: bool = False) -> ReleaseResult:
    """Regenerate (or with ``check``, verify) the student skeleton; with ``out`` write a distribution only.

    The skeleton is *in sync* when the solution renders to the committed skeleton or to the
    working file: a student who filled in their module has not made the kit stale, and a
    teacher who regenerated but has not committed yet is in sync too.

    Without ``out`` this is the teachers' command that writes the student file. It never
    overwrites a student's work: a working file that differs from both the committed skeleton
    and the new rendering is refused (``student_work_present``) unless ``force``, which first
    keeps a copy under ``runs/release-backup/``. With ``out`` nothing in ``root`` is written.
    """
    from ..paths import SOLUTION_MODULE, STUDENT_MODULE

    student = root / STUDENT_MODULE
    if out is not None:
        return ReleaseResult(student, False, write_distribution(root, out))
    wanted, working, committed = skeleton_state(root)
    if check:
        if wanted not in (working, committed):
            raise ReleaseError(
                f"{STUDENT_MODULE} is out of date with {SOLUTION_MODULE}",
                code="skeleton_stale",
                details={"student": str(student), "solution": str(SOLUTION_MODULE)},
                hints=["Run `batchlab release` and commit the regenerated student file; never edit it by hand."])
        note = "" if working == wanted else "the committed skeleton is in sync; the working file holds a student's edits"
        return ReleaseResult(student, False, note=note)
    if working == wanted:
        return ReleaseResult(student, False)
    backup = None
    if working is not None and working != committed:
        if not force:
            raise ReleaseError(
                f"{STUDENT_MODULE} holds edits that are not in the committed skeleton: release would overwrite them",
                code="student_work_present", details={"student": str(student)},
                hints=["To write a student distribution, use `batchlab release --out DIR` (it never touches this file).",
                       "To discard the edits, run `batchlab release --force` (a copy is kept under runs/release-backup/)."])
        backup_dir = root / "runs" / "release-backup"
        backup_dir.mkdir(parents=True, exist_ok=True)
        backup = backup_dir / f"{student.stem}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.py"
        backup.write_text(working, encoding="utf-8")
    student.parent.mkdir(parents=True, exist_ok=True)
    tmp = student.with_name(student.name + ".tmp")
    tmp.write_text(wanted, encoding="utf-8")
    os.replace(tmp, student)
    return ReleaseResult(student, True, backup=backup)


def write_distribution(root: Path, out: Path) -> Path:
    """Write what students get into ``out``: their README, the skeleton rendered from the solution,
    the harness, the public grader, notebooks, templates, examples and the kit's harness tests;
    no solution, no hidden scenarios. Nothing in ``root`` is written."""
    from ..paths import SOLUTION_MODULE, STUDENT_MODULE

    out = out.resolve()
    if out.exists() and any(out.iterdir()):
        raise ReleaseError(f"{out} is not empty", code="out_not_empty", details={"out": str(out)},
                           hints=["Choose a new folder; release never overwrites a distribution."])
    skeleton = render_student(root / SOLUTION_MODULE)
    ignore = shutil.ignore_patterns(*EXCLUDED_PARTS, "*.pyc", "*.sqlite*", "grader-results", "*.egg-info")
    for name in (*DISTRIBUTION, *DISTRIBUTION_TESTS):
        src = root / name
        if not src.exists():
            continue
        dst = out / name
        if src.is_dir():
            shutil.copytree(src, dst, ignore=ignore)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    (out / STUDENT_MODULE).parent.mkdir(parents=True, exist_ok=True)
    (out / STUDENT_MODULE).write_text(skeleton, encoding="utf-8")
    readme = root / STUDENT_README
    if readme.exists():
        shutil.copy2(readme, out / "README.md")
        (out / STUDENT_README).unlink(missing_ok=True)
    leaked = [p for p in out.rglob("*") if "solution" in p.parts or "hidden" in p.parts]
    if leaked:
        raise ReleaseError("the distribution would leak solution or hidden files", code="leak",
                           details={"files": [str(p) for p in leaked[:10]]})
    return out
