"""Finding the submissions of a class and reading each one into a work folder of its own.

A submissions folder holds one entry per student; the entry's name is the student id:
``alice.py`` (the module itself), ``bob/`` (a folder holding ``document_processor.py``) or ``carol.zip``
(a zip holding ``document_processor.py`` somewhere inside). Anything that cannot be read becomes an
:class:`Unreadable` with the reason, never an exception: one broken upload must not stop a class.

A zip is never extracted: only the module's bytes are read from it, and a zip naming a path outside
itself (absolute, ``..``) is refused as a whole, since it was made to write where it should not.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

MODULE_NAME = "document_processor.py"
#: A module larger than this is not a lesson's module (the reference is about 30 KB).
MAX_MODULE_BYTES = 1_000_000
#: Student ids become folder names: keep them to a safe alphabet.
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$")


@dataclass(frozen=True)
class Submission:
    """One student's module, read: its id, its text and the hash that says whether it changed."""

    student: str
    entry: Path
    source: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.source.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Unreadable:
    """An entry that cannot be graded, and why (a sentence for the gradebook)."""

    student: str
    entry: Path
    reason: str


def student_id(entry: Path) -> str:
    """``alice.py`` -> ``alice``, ``carol.zip`` -> ``carol``, a folder keeps its name."""
    if entry.is_file() and entry.suffix.lower() in (".py", ".zip"):
        return entry.stem
    return entry.name


def discover(folder: Path) -> list[Submission | Unreadable]:
    """Every entry of ``folder`` (hidden ones skipped), read, sorted by student id."""
    entries = [p for p in sorted(folder.iterdir()) if not p.name.startswith(".")]
    by_id: dict[str, list[Path]] = {}
    for entry in entries:
        by_id.setdefault(student_id(entry), []).append(entry)
    out: list[Submission | Unreadable] = []
    for student, paths in sorted(by_id.items()):
        if len(paths) > 1:
            names = ", ".join(p.name for p in paths)
            out.append(Unreadable(student, paths[0], f"two entries for one student ({names}): keep one"))
        elif not SAFE_ID.match(student):
            out.append(Unreadable(student, paths[0], "the entry's name is not a usable student id "
                                                     "(letters, digits, . _ @ + - only)"))
        else:
            out.append(read_entry(student, paths[0]))
    return out


def read_entry(student: str, entry: Path) -> Submission | Unreadable:
    """Read one entry; every way it can be unreadable gives an :class:`Unreadable`."""
    try:
        if entry.is_symlink() or (entry / MODULE_NAME).is_symlink():
            return Unreadable(student, entry, "a symbolic link: submit the file itself")
        if entry.is_dir():
            module = entry / MODULE_NAME
            if not module.is_file():
                return Unreadable(student, entry, f"the folder holds no {MODULE_NAME}")
            data = _read_capped(module)
        elif entry.is_file() and entry.suffix.lower() == ".py":
            data = _read_capped(entry)
        elif entry.is_file() and entry.suffix.lower() == ".zip":
            data = _from_zip(entry)
        else:
            return Unreadable(student, entry, "not a .py file, a .zip or a folder")
    except _Refused as exc:
        return Unreadable(student, entry, str(exc))
    except OSError as exc:
        return Unreadable(student, entry, f"cannot be read: {exc.strerror or exc}")
    return _decode(student, entry, data)


class _Refused(Exception):
    """An entry refused, with the sentence to record."""


def _read_capped(path: Path) -> bytes:
    if path.stat().st_size > MAX_MODULE_BYTES:
        raise _Refused(f"{path.name} is larger than {MAX_MODULE_BYTES // 1000} KB")
    return path.read_bytes()


def _from_zip(path: Path) -> bytes:
    """The module's bytes from a zip: the shallowest ``document_processor.py``, after the whole zip is vetted."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            for info in infos:
                name = info.filename.replace("\\", "/")
                if name.startswith("/") or ".." in PurePosixPath(name).parts or re.match(r"^[A-Za-z]:", name):
                    raise _Refused(f"the zip names a path outside itself ({info.filename!r}): refused")
            found = [i for i in infos if PurePosixPath(i.filename).name == MODULE_NAME and not i.is_dir()
                     and "__MACOSX" not in i.filename]
            if not found:
                raise _Refused(f"the zip holds no {MODULE_NAME}")
            depth = min(len(PurePosixPath(i.filename).parts) for i in found)
            shallow = [i for i in found if len(PurePosixPath(i.filename).parts) == depth]
            if len(shallow) > 1:
                raise _Refused(f"the zip holds {len(shallow)} copies of {MODULE_NAME} at the same depth")
            info = shallow[0]
            if info.file_size > MAX_MODULE_BYTES:
                raise _Refused(f"{MODULE_NAME} in the zip is larger than {MAX_MODULE_BYTES // 1000} KB")
            with zf.open(info) as fh:
                return fh.read(MAX_MODULE_BYTES + 1)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, RuntimeError) as exc:
        raise _Refused(f"not a readable zip ({exc})") from exc


def _decode(student: str, entry: Path, data: bytes) -> Submission | Unreadable:
    if not data.strip():
        return Unreadable(student, entry, f"{MODULE_NAME} is empty")
    if b"\x00" in data:
        return Unreadable(student, entry, f"{MODULE_NAME} is binary (NUL bytes), not Python source")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Unreadable(student, entry, f"{MODULE_NAME} is not UTF-8 text (byte {exc.start})")
    return Submission(student, entry, text)
