"""The kit as it was when grading began: what a submission changed is found, put back and reported.

Inside bubblewrap a child cannot write the kit at all (:mod:`grader.bubblewrap`). Without it (the fallback),
student code runs with the grader's permissions and can rewrite the grader or the thresholds, so that the
*next* submission is graded by a changed kit. This module is that fallback's guarantee, and a check of the
sandbox's: at the start of a session it keeps the bytes of every file of ``grader/`` and ``labs/batchlab/``
(about a megabyte) and the names in the interpreter's ``site-packages`` and at the kit's root; at the end it
writes back every changed or removed file, removes files added to those two folders and ``.pth`` files added
to ``site-packages`` (they would run in every later Python start), and lists new files at the kit's root
(reported, not removed: they may be someone else's). What it cannot undo: a change read by a child *during*
the session (the grader's own modules and the thresholds are loaded before any child starts, so its own
grade is not affected) and anything outside these places.
"""

from __future__ import annotations

import contextlib
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

SKIP_PARTS = {"__pycache__"}


def _files(folder: Path) -> dict[Path, bytes]:
    out = {}
    for path in folder.rglob("*"):
        if path.is_file() and not SKIP_PARTS & set(path.parts) and path.suffix != ".pyc":
            with contextlib.suppress(OSError):
                out[path] = path.read_bytes()
    return out


def _names(folder: Path) -> set[str]:
    try:
        return {p.name for p in folder.iterdir()}
    except OSError:
        return set()


@dataclass
class KitSnapshot:
    """The kit's files at the start of a session (:func:`take`)."""

    folders: tuple[Path, ...]
    root: Path
    files: dict[Path, bytes] = field(default_factory=dict)
    site_packages: Path = field(default_factory=lambda: Path(sysconfig.get_paths()["purelib"]))
    site_names: set[str] = field(default_factory=set)
    root_names: set[str] = field(default_factory=set)

    def restore(self, *, ignore: tuple[Path, ...] = ()) -> list[str]:
        """Put the kit back as it was; returns what had changed (empty when nothing did)."""
        changed: list[str] = []
        now = {p: b for folder in self.folders for p, b in _files(folder).items()}
        for path, data in self.files.items():
            if now.get(path) != data:
                changed.append(f"{'changed' if path in now else 'removed'}: {path}")
                with contextlib.suppress(OSError):
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data)
        for path in sorted(set(now) - set(self.files)):
            if not any(path.is_relative_to(p) for p in ignore):
                changed.append(f"added (removed again): {path}")
                with contextlib.suppress(OSError):
                    path.unlink()
        for name in sorted(_names(self.site_packages) - self.site_names):
            if name.endswith(".pth"):
                changed.append(f"added (removed again): {self.site_packages / name}")
                with contextlib.suppress(OSError):
                    (self.site_packages / name).unlink()
        for name in sorted(_names(self.root) - self.root_names):
            if not any((self.root / name) == p or p.is_relative_to(self.root / name) for p in ignore):
                changed.append(f"added (left in place, check it): {self.root / name}")
        return changed


def take(root: Path, folders: tuple[Path, ...]) -> KitSnapshot:
    snap = KitSnapshot(folders=folders, root=root)
    for folder in folders:
        snap.files.update(_files(folder))
    snap.site_names = _names(snap.site_packages)
    snap.root_names = _names(root)
    return snap
