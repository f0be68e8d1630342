"""The house's rooms and which way their imports may point (issue 15, item 1; README "Architecture").

``batchlab`` is the harness (the core, flat at the top of the package) plus front-ends in rooms of
their own: ``batchlab.teach`` (notebook self-check, demo, dashboard, report, chaos, bench, release),
and later ``batchlab.serve`` (the batch service) and ``batchlab.grade`` (class grading).
``batchlab.cli`` is the entry point over all of them. The rules:

* the core imports no room and not the CLI (students and the grader load only the harness);
* the grader imports the core only (it grades with its own harness, never through a front-end);
* a room imports the core and itself, never another room and never the CLI.

Imports are read with :mod:`ast`, function-level ones included, so a lazy import cannot hide an arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "labs" / "batchlab"
GRADER = ROOT / "grader"
ROOMS = ("teach", "serve", "grade")
ENTRY = ("cli", "__main__")
#: ``from batchlab import check`` is the notebooks' public API: the package's ``__getattr__`` imports
#: the self-check on first use (and the import-cost test proves ``import batchlab`` stays light).
PACKAGE_INIT = "batchlab"


def module_name(path: Path, base: Path, prefix: str) -> str:
    """The dotted name of a source file under ``base`` (a package's ``__init__`` names the package)."""
    parts = [prefix, *path.relative_to(base).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """Every absolute module name ``source`` imports, relative imports resolved against ``module``.

    ``from X import y`` yields both ``X`` and ``X.y``, since ``y`` may be a submodule.
    """
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base_parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def place_of(name: str) -> str | None:
    """Where a ``batchlab`` module lives: ``core``, a room's name, ``entry``, ``package``; None outside the kit."""
    parts = name.split(".")
    if parts[0] != "batchlab":
        return None
    if len(parts) == 1:
        return "package"
    if parts[1] in ROOMS:
        return parts[1]
    if parts[1] in ENTRY:
        return "entry"
    return "core"


def violations(module: str, source: str, *, is_package: bool = False, grader: bool = False) -> list[str]:
    """The imports of ``module`` that point the wrong way, as ``module -> imported`` lines."""
    here = "grader" if grader else place_of(module)
    bad = []
    for name in sorted(imported_names(source, module, is_package=is_package)):
        there = place_of(name)
        if there is None or there in ("core", "package"):
            continue  # anyone may import the core, the (light) package itself and the outside world
        if here == "package" and there != "entry":
            continue  # the package's lazy notebook exports (see PACKAGE_INIT)
        if here == "entry":
            continue  # the CLI is the one place that sees every room
        if here in ROOMS and there == here:
            continue
        bad.append(f"{module} -> {name}")
    return bad


def kit_sources() -> list[tuple[str, Path, bool]]:
    """(module name, file, whether it belongs to the grader) for every module of the package and the grader."""
    found = [(module_name(p, PACKAGE, "batchlab"), p, False) for p in sorted(PACKAGE.rglob("*.py"))]
    found += [(module_name(p, GRADER, "grader"), p, True) for p in sorted(GRADER.rglob("*.py"))]
    return found


@pytest.mark.parametrize(("module", "path", "grader"), kit_sources(), ids=[m for m, _, _ in kit_sources()])
def test_every_module_imports_only_in_the_allowed_directions(module: str, path: Path, grader: bool) -> None:
    """The core and the grader import no front-end, and no room imports another room or the CLI."""
    source = path.read_text(encoding="utf-8")
    assert violations(module, source, is_package=path.name == "__init__.py", grader=grader) == []


def test_the_rooms_exist_and_the_core_stays_flat() -> None:
    """The teaching front-ends are in ``batchlab/teach/``; no front-end module is left at the top."""
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert (PACKAGE / "teach" / "__init__.py").is_file()
    assert top.isdisjoint({"checks", "demo", "dashboard", "dashboard_model", "report", "plots", "bench",
                           "release", "chaos", "grading"})


class TestTheCheckCanFail:
    """The direction check itself, fed planted sources: each wrong arrow is reported, each right one is not."""

    @pytest.mark.parametrize(("module", "source", "is_package", "grader"), [
        ("batchlab.metrics", "from .teach.report import build\n", False, False),
        ("batchlab.runner", "def f():\n    from batchlab.teach.demo import run_demo\n", False, False),
        ("batchlab.sink", "from .cli import main\n", False, False),
        ("grader.scenarios", "from batchlab.teach.demo import run_demo\n", False, True),
        ("grader.probe", "import batchlab.serve.app\n", False, True),
        ("batchlab.teach.demo", "from ..serve import app\n", False, False),
        ("batchlab.teach.dashboard.model", "from ...grade.roster import Roster\n", False, False),
        ("batchlab.teach", "from ..cli import main\n", True, False),
    ], ids=["core->teach", "core->teach lazily", "core->cli", "grader->teach", "grader->serve",
            "teach->serve", "teach subpackage->grade", "teach->cli"])
    def test_a_planted_wrong_import_is_reported(self, module: str, source: str, is_package: bool,
                                                grader: bool) -> None:
        """A module that imports against the direction is named with what it imports."""
        assert violations(module, source, is_package=is_package, grader=grader) != []

    @pytest.mark.parametrize(("module", "source", "is_package", "grader"), [
        ("batchlab.teach.demo", "from ..runner import run_passes\nfrom .notebook import overview\n", False, False),
        ("batchlab.teach.dashboard.view", "from .model import DashboardModel\nfrom ...faults import CRASH_KINDS\n",
         False, False),
        ("grader.scenarios", "from batchlab.pipeline import planned_calls\nimport json\n", False, True),
        ("batchlab.cli", "from .teach.demo import run_demo\n", False, False),
    ], ids=["teach->core and itself", "teach subpackage->itself and core", "grader->core", "cli->teach"])
    def test_an_allowed_import_is_not_reported(self, module: str, source: str, is_package: bool,
                                               grader: bool) -> None:
        """Imports of the core, of the own room, and the CLI's imports of every room pass."""
        assert violations(module, source, is_package=is_package, grader=grader) == []
