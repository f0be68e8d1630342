"""The design page the code cites (docs/design.md) is in the repository and in the student distribution,
and every citation names a section or principle that exists there."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from batchlab.paths import kit_root
from batchlab.teach.release import release

ROOT = kit_root()
PAGE = ROOT / "docs" / "design.md"
CITATION = re.compile(r"docs/design\.md,\s+(principle\s+(\d+)|[A-Z][a-z]+)")


def tracked_texts() -> dict[str, str]:
    names = subprocess.run(["git", "ls-files", "*.py", "*.md", "*.ipynb"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    return {n: (ROOT / n).read_text(encoding="utf-8") for n in names if (ROOT / n).is_file()}


def test_every_citation_names_a_section_or_principle_of_the_page() -> None:
    page = PAGE.read_text(encoding="utf-8")
    sections = set(re.findall(r"^## (\w+)", page, flags=re.M))
    principles = set(re.findall(r"^(\d+)\. \*\*", page, flags=re.M))
    cited = [(name, m) for name, text in tracked_texts().items() for m in CITATION.finditer(text)]
    assert len(cited) >= 10
    for name, m in cited:
        if m.group(2):
            assert m.group(2) in principles, f"{name}: {m.group(0)} is not on the page"
        else:
            assert m.group(1) in sections, f"{name}: {m.group(0)} is not on the page"


def test_nothing_cites_design_files_outside_the_repository() -> None:
    outside = [name for name, text in tracked_texts().items()
               if re.search(r"\b(DESIGN|STYLE)\.md\b", text) and name != "docs/design.md"]
    assert outside == []


def test_the_student_distribution_carries_the_page(tmp_path: Path) -> None:
    release(root=ROOT, out=tmp_path / "dist")
    assert (tmp_path / "dist" / "docs" / "design.md").read_text(encoding="utf-8") == PAGE.read_text(encoding="utf-8")
