"""Notebook 08 (scale out, an optional extension): its shape, where it is listed, and its run without PostgreSQL.

``test_notebooks.py`` runs every notebook under nbval with the reference, this one included (with the
PostgreSQL section on a real server where Debian's binaries are installed). Here the same notebook is executed
with the binaries hidden: every cell still runs and the PostgreSQL section says, in Chinese, why it is skipped.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from batchlab.paths import kit_root, solution_module

ROOT = kit_root()
NOTEBOOK = ROOT / "notebooks" / "08_scale_out.ipynb"
CJK = re.compile(r"[\u4e00-\u9fff]")


def cells() -> list[dict[str, Any]]:
    return json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]


def text(cell: dict[str, Any]) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _execute(folder: Path, env: dict[str, str]) -> dict[str, str]:
    """Run the whole notebook in a kernel with ``env`` added; each code cell's printed text by cell id."""
    import nbformat
    from nbclient import NotebookClient

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        nb = nbformat.read(NOTEBOOK, as_version=4)
        NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return {c.get("id"): "".join(o.get("text", "") for o in c.get("outputs", [])) for c in nb.cells
            if c.cell_type == "code"}


class TestShape:
    def test_the_teaching_text_is_chinese_and_answers_after_class_question_3(self) -> None:
        """Every markdown cell has Chinese prose; the first quotes 课后思考 3, the terms are given in English too."""
        prose = [text(c) for c in cells() if c["cell_type"] == "markdown"]
        assert prose and all(CJK.search(p) for p in prose)
        assert "在分布式环境下，如何实现跨节点的断点续传？" in prose[0]
        joined = "\n".join(prose)
        for term in ("租约（lease）", "抖动（jitter）", "栅栏令牌（fencing token）", "SKIP LOCKED", "procrastinate",
                     "可见性超时（visibility timeout）"):
            assert term in joined, term

    def test_only_checked_cells_store_outputs_and_every_other_cell_ignores_its_output(self) -> None:
        """Deterministic cells carry NBVAL_CHECK_OUTPUT and their output; every other one NBVAL_IGNORE_OUTPUT, none."""
        code = [c for c in cells() if c["cell_type"] == "code"]
        for cell in code:
            checked = "# NBVAL_CHECK_OUTPUT" in text(cell)
            assert checked or "# NBVAL_IGNORE_OUTPUT" in text(cell), text(cell)[:120]
            assert bool(cell["outputs"]) == checked, text(cell)[:120]
        assert sum("# NBVAL_CHECK_OUTPUT" in text(c) for c in code) >= 3

    def test_runs_go_to_a_work_dir_and_crashes_are_signals_to_child_processes(self) -> None:
        """The setup cell writes into work_dir(); no cell signals the kernel itself (os.getpid())."""
        code = [text(c) for c in cells() if c["cell_type"] == "code"]
        assert re.search(r'^WORK = work_dir\("lesson15-08-"\)', code[0], re.M)
        assert not any("os.getpid()" in c or "kit_root()" in c for c in code)

    def test_it_is_listed_beside_the_other_notebooks(self) -> None:
        """notebooks/README.md's table, the README and the teacher's script name it."""
        for name in ("notebooks/README.md", "README.md", "teacher-script.md", "blackboard-steps.md"):
            assert "08_scale_out.ipynb" in (ROOT / name).read_text(encoding="utf-8"), name


@pytest.mark.slow
@pytest.mark.skipif(not solution_module().exists(), reason="the reference is not part of a student distribution")
def test_without_postgresql_every_cell_runs_and_section_5_says_why_in_chinese(tmp_path: Path) -> None:
    """With the server binaries hidden ($BATCHLAB_PG_BIN empty) the notebook runs to its end, strict, and skips §5."""
    out = _execute(tmp_path, {"BATCHLAB_PG_BIN": str(tmp_path), "BATCHLAB_IMPL": str(solution_module()),
                              "BATCHLAB_STRICT": "1"})
    skipped = [cid for cid, o in out.items() if "跳过" in o and "没有安装 PostgreSQL 的服务器程序" in o]
    assert len(skipped) >= 1 and "PostgreSQL is up" not in "".join(out.values())
    assert "0 stale-token commits" in "".join(out.values())


@pytest.mark.slow
def test_with_the_untouched_skeleton_every_cell_runs_and_the_worker_sections_say_what_to_finish(
        tmp_path: Path, skeleton_impl: Path) -> None:
    """A student who opens 08 before finishing step 05 can Run All: the real-worker sections name the TODO steps."""
    out = _execute(tmp_path, {"BATCHLAB_IMPL": str(skeleton_impl), "BATCHLAB_STRICT": "0"})
    notes = [cid for cid, o in out.items() if "先完成第 01-05 步" in o]
    assert len(notes) >= 4 and "SIGKILL" not in "".join(out.values())
