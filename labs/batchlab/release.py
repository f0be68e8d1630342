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

import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import KitError

BEGIN = re.compile(r"^(?P<indent>[ \t]*)#\s*BEGIN SOLUTION\b\s*(?P<hint>.*)$")
END = re.compile(r"^[ \t]*#\s*END SOLUTION\b")

#: What a student distribution contains (relative to the kit root).
DISTRIBUTION = (
    "README.md", "pyproject.toml", "checklist.md", ".gitignore",
    "labs/batchlab", "labs/student", "grader", "notebooks", "templates", "examples",
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


def release(*, root: Path, check: bool = False, out: Path | None = None) -> ReleaseResult:
    """Write (or with ``check``, compare) the student skeleton; with ``out`` also write a distribution."""
    from .paths import SOLUTION_MODULE, STUDENT_MODULE

    solution = root / SOLUTION_MODULE
    student = root / STUDENT_MODULE
    wanted = render_student(solution)
    current = student.read_text(encoding="utf-8") if student.exists() else None
    changed = current != wanted
    if check:
        if changed:
            raise ReleaseError(
                f"{STUDENT_MODULE} is out of date with {SOLUTION_MODULE}",
                code="skeleton_stale",
                details={"student": str(student), "solution": str(solution)},
                hints=["Run `batchlab release` and commit the regenerated student file; never edit it by hand."])
        return ReleaseResult(student, False)
    if changed:
        student.parent.mkdir(parents=True, exist_ok=True)
        student.write_text(wanted, encoding="utf-8")
    out_dir = write_distribution(root, out) if out is not None else None
    return ReleaseResult(student, changed, out_dir)


def write_distribution(root: Path, out: Path) -> Path:
    """Copy what students get into ``out``: no solution, no hidden scenarios, no kit tests."""
    out = out.resolve()
    if out.exists() and any(out.iterdir()):
        raise ReleaseError(f"{out} is not empty", code="out_not_empty", details={"out": str(out)},
                           hints=["Choose a new folder; release never overwrites a distribution."])
    ignore = shutil.ignore_patterns(*EXCLUDED_PARTS, "*.pyc", "*.sqlite*", "grader-results")
    for name in DISTRIBUTION:
        src = root / name
        if not src.exists():
            continue
        dst = out / name
        if src.is_dir():
            shutil.copytree(src, dst, ignore=ignore)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    leaked = [p for p in out.rglob("*") if "solution" in p.parts or "hidden" in p.parts]
    if leaked:
        raise ReleaseError("the distribution would leak solution or hidden files", code="leak",
                           details={"files": [str(p) for p in leaked[:10]]})
    return out
