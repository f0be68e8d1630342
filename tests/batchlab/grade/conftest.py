"""Helpers for the class-grading tests: a folder of submissions built from the reference and the skeleton."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

from batchlab.paths import solution_module
from batchlab.teach.release import render_student

#: The grader subset the grading tests use: step 02 runs in about a second per submission.
FAST = "--step idempotency"


def reference_source() -> str:
    return solution_module().read_text(encoding="utf-8")


def skeleton_source() -> str:
    return render_student(solution_module())


def broken_key_source() -> str:
    """The reference whose idempotency key no longer case-folds the id (loses step 02 points)."""
    source = reference_source()
    old = "normalized_id = doc.id.strip().casefold()"
    assert source.count(old) == 1
    return source.replace(old, "normalized_id = doc.id.strip()")


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def unreadable_entries(folder: Path) -> dict[str, str]:
    """Write every kind of unreadable entry into ``folder``; return id -> a word its reason must contain."""
    (folder / "empty.py").write_text("", encoding="utf-8")
    (folder / "binary.py").write_bytes(b"\x7fELF\x00\x01\x02" * 20)
    (folder / "badzip.zip").write_bytes(b"PK\x03\x04 not really a zip")
    write_zip(folder / "nomodule.zip", {"src/other.py": b"x = 1\n"})
    write_zip(folder / "traversal.zip", {"../../evil.py": b"x = 1\n", "document_processor.py": b"x = 1\n"})
    (folder / "emptyfolder").mkdir()
    (folder / "link.py").symlink_to("/etc/hostname")
    return {"empty": "empty", "binary": "binary", "badzip": "zip", "nomodule": "no document_processor.py",
            "traversal": "outside", "emptyfolder": "no document_processor.py", "link": "symbolic link"}


def bwrap_unusable() -> str | None:
    """None when bubblewrap runs here, else why not (the skip reason)."""
    if shutil.which("bwrap") is None:
        return "bubblewrap (bwrap) is not installed: apt-get install bubblewrap"
    proc = subprocess.run(["bwrap", "--ro-bind", "/", "/", "true"], capture_output=True, text=True)
    if proc.returncode != 0:
        return f"bubblewrap cannot create namespaces here: {proc.stderr.strip()[:200]}"
    return None
