"""``batchlab autograder --out autograder.zip``: the grader packaged for Gradescope.

The zip holds, at its root (Gradescope's spec: ``setup.sh`` and ``run_autograder`` at the top, not in a folder):

    setup.sh          run once, as root, when Gradescope builds the image: Python 3.11, a venv, the kit
    run_autograder    run per submission: ``python -m batchlab.grade.gradescope`` (the grader with --hidden)
    kit/batchlab-VERSION-py3-none-any.whl    the kit, as a wheel built here (no build backend, no network)
    kit/grader/       the grader, hidden scenarios included (never the reference solution)

The wheel is written by hand (a zip with the package and a ``.dist-info``): building it with setuptools would
need setuptools >= 68 and ``wheel`` in the TA's environment or the network, and a wheel installs offline.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import UsageError
from ..paths import kit_root
from .gradescope_scripts import RUN_AUTOGRADER, SETUP_SH

#: Fixed timestamps, so the same kit gives the same zip.
STAMP = (2026, 1, 1, 0, 0, 0)


def _files(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
            yield path


def _add(zf: zipfile.ZipFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = zipfile.ZipInfo(name, date_time=STAMP)
    info.external_attr = (0o100000 | mode) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, data)


def _metadata(project: dict[str, object]) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {project['name']}", f"Version: {project['version']}",
             f"Summary: {project.get('description', '')}", f"Requires-Python: {project.get('requires-python', '')}"]
    lines += [f"Requires-Dist: {dep}" for dep in project.get("dependencies", [])]  # type: ignore[attr-defined]
    return "\n".join(lines) + "\n"


def build_wheel(root: Path) -> tuple[str, bytes]:
    """The kit's wheel (name, bytes): ``labs/batchlab`` and a ``.dist-info`` from ``pyproject.toml``."""
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    name, version = str(project["name"]), str(project["version"])
    info = f"{name}-{version}.dist-info"
    entries: list[tuple[str, bytes]] = []
    package = root / "labs" / "batchlab"
    entries += [(f"batchlab/{p.relative_to(package).as_posix()}", p.read_bytes()) for p in _files(package)]
    scripts = "".join(f"{k} = {v}\n" for k, v in project.get("scripts", {}).items())
    entries += [(f"{info}/METADATA", _metadata(project).encode()),
                (f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: batchlab-autograder\nRoot-Is-Purelib: true\n"
                                  b"Tag: py3-none-any\n"),
                (f"{info}/entry_points.txt", f"[console_scripts]\n{scripts}".encode())]
    record = [f"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}"
              for n, d in entries] + [f"{info}/RECORD,,"]
    entries.append((f"{info}/RECORD", ("\n".join(record) + "\n").encode()))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for arc, data in entries:
            _add(zf, arc, data)
    return f"{name}-{version}-py3-none-any.whl", buf.getvalue()


def build_autograder(out: Path, *, root: Path | None = None) -> Path:
    """Write the Gradescope autograder zip to ``out`` (atomically) and return it."""
    root = root or kit_root()
    grader = root / "grader"
    if not grader.is_dir() or not (root / "pyproject.toml").is_file():
        raise UsageError("this copy of the kit has no grader/ or pyproject.toml", code="grader_missing",
                         details={"kit_root": str(root)}, hints=["Run it from the teachers' copy of the kit."])
    wheel_name, wheel = build_wheel(root)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with zipfile.ZipFile(tmp, "w") as zf:
        _add(zf, "setup.sh", SETUP_SH.encode(), 0o755)
        _add(zf, "run_autograder", RUN_AUTOGRADER.encode(), 0o755)
        _add(zf, f"kit/{wheel_name}", wheel)
        for path in _files(grader):
            _add(zf, f"kit/grader/{path.relative_to(grader).as_posix()}", path.read_bytes())
    tmp.replace(out)
    return out


def cmd_autograder(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not args.force:
        raise UsageError(f"{out} exists", code="out_exists", details={"out": str(out)},
                         hints=["Pass --force to replace it, or choose another --out."])
    if out.suffix.lower() != ".zip":
        raise UsageError(f"{out} does not end in .zip", code="usage_error", details={"out": str(out)},
                         hints=["Gradescope takes a .zip: --out autograder.zip"])
    path = build_autograder(out)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB): upload it on Gradescope's Configure Autograder page "
          "(grader/README.md, Gradescope)")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("autograder", help="package the grader as a Gradescope autograder zip")
    p.add_argument("--out", default="autograder.zip", help="the zip to write (default autograder.zip)")
    p.add_argument("--force", action="store_true", help="replace an existing zip")
    p.set_defaults(func=cmd_autograder)
