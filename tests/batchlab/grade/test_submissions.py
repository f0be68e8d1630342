"""Reading a class's submissions: every kind of entry, and every way one can be unreadable."""

from __future__ import annotations

from pathlib import Path

from batchlab.grade.submissions import Submission, Unreadable, discover

from .conftest import unreadable_entries, write_zip


def test_a_file_a_folder_and_a_zip_are_each_read_under_the_entry_name(tmp_path: Path) -> None:
    """alice.py, bob/document_processor.py and carol.zip (module in a subfolder) give three ids and their text."""
    (tmp_path / "alice.py").write_text("A = 1\n", encoding="utf-8")
    (tmp_path / "bob").mkdir()
    (tmp_path / "bob" / "document_processor.py").write_text("B = 2\n", encoding="utf-8")
    write_zip(tmp_path / "carol.zip", {"lab/src/document_processor.py": b"C = 3\n", "notes.txt": b"hi"})
    (tmp_path / ".DS_Store").write_bytes(b"\x00")
    found = {item.student: item for item in discover(tmp_path)}
    assert sorted(found) == ["alice", "bob", "carol"]
    assert all(isinstance(item, Submission) for item in found.values())
    assert [found[s].source for s in ("alice", "bob", "carol")] == ["A = 1\n", "B = 2\n", "C = 3\n"]  # type: ignore[union-attr]


def test_every_unreadable_entry_gets_a_reason_instead_of_an_exception(tmp_path: Path) -> None:
    """Empty, binary, a bad zip, a zip without the module, a zip with ../ paths, an empty folder: each a reason."""
    expected = unreadable_entries(tmp_path)
    (tmp_path / "dup.py").write_text("x = 1\n", encoding="utf-8")
    write_zip(tmp_path / "dup.zip", {"document_processor.py": b"x = 1\n"})
    (tmp_path / "notes.txt").write_text("hello", encoding="utf-8")
    found = {item.student: item for item in discover(tmp_path)}
    for student, word in {**expected, "dup": "two entries", "notes.txt": "not a .py"}.items():
        item = found[student]
        assert isinstance(item, Unreadable), student
        assert word in item.reason, (student, item.reason)
    assert not (tmp_path.parent / "evil.py").exists()
