"""Single cells of the step notebooks, run on purpose-built inputs (issue 8 item 7).

``test_notebooks.py`` runs whole notebooks with the reference and the skeleton;
these tests put single cells in the situations a whole run never meets: a child
that dies on its own before the notebook's SIGKILL, a skeleton whose runs commit
nothing (the cells must say so quietly: no ``None`` figures, no matplotlib
warnings), and the scratch folder every notebook writes into.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from batchlab.paths import kit_root

NOTEBOOKS = kit_root() / "notebooks"
#: The notebooks whose setup cell already uses ``work_dir`` (03 and 04 are edited by others and follow).
WORK_DIR_NOTEBOOKS = ["00_motivation", "01_checkpoint", "02_idempotency", "05_fault_injection_resume",
                      "06_metrics_report"]


def read(name: str) -> Any:
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def cell_source(nb: Any, cell_id: str) -> str:
    [source] = [c.source for c in nb.cells if c.get("id") == cell_id]
    return source


@pytest.mark.parametrize("name", WORK_DIR_NOTEBOOKS)
def test_the_setup_cell_writes_into_a_work_dir_removed_at_kernel_exit(name: str) -> None:
    source = cell_source(read(name), f"nb{name[:2]}-01")
    assert re.search(rf'^WORK = work_dir\("lesson15-{name[:2]}-"\)', source, re.M), source
    assert "mkdtemp" not in source


class TestSigkillCell:
    """Notebook 01, "kill a process that uses your checkpoint": only a real kill counts as one."""

    DIES_ON_ITS_OWN = '''
import time


class CheckpointStore:
    """Opens fine, then fails on its own 0.1 s later (as a store with a bug would)."""

    def __init__(self, state_dir, batch_id, shard=None):
        self.started = time.monotonic()

    def transition(self, key, state, **fields):
        if time.monotonic() - self.started > 0.1:
            raise RuntimeError("disk full (simulated)")

    def entries(self):
        return {}

    def close(self):
        pass
'''

    def run_cell(self, impl: Path, work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        import signal
        import subprocess
        import sys
        import time

        from batchlab.teach.notebook import impl_path, load_student, student_cell

        monkeypatch.setenv("BATCHLAB_IMPL", str(impl))
        monkeypatch.delenv("BATCHLAB_STRICT", raising=False)
        source = cell_source(read("01_checkpoint"), "nb01-16")
        exec(compile(source, "nb01-16", "exec"),  # noqa: S102 - the notebook's own cell, run as the kernel would
             {"WORK": work, "impl_path": impl_path, "load_student": load_student, "student_cell": student_cell,
              "signal": signal, "subprocess": subprocess, "sys": sys, "time": time})

    def test_a_child_that_died_on_its_own_is_not_reported_as_killed(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
        impl = tmp_path / "dies.py"
        impl.write_text(self.DIES_ON_ITS_OWN, encoding="utf-8")
        self.run_cell(impl, tmp_path, monkeypatch)
        out = capsys.readouterr().out
        assert "killed by our SIGKILL" not in out and "keys survived" not in out
        assert "the child ended on its own, exit code 1" in out and "disk full (simulated)" in out

    def test_the_reference_is_really_killed_and_its_checkpoint_survives(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
            reference_impl: Path) -> None:
        self.run_cell(reference_impl, tmp_path, monkeypatch)
        out = capsys.readouterr().out
        assert "child was working and was killed by our SIGKILL (return code -9)" in out
        assert re.search(r"\d+ keys survived the kill", out), out


def test_notebook_05_on_the_skeleton_says_nothing_was_committed_quietly(skeleton_impl: Path, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The skeleton's runs commit nothing: no "recovered None", no matplotlib warning, a sentence instead."""
    from nbclient import NotebookClient

    nb = read("05_fault_injection_resume")
    keep = {"nb05-01", "nb05-03", "nb05-05", "nb05-07", "nb05-08", "nb05-10"}
    nb.cells = [c for c in nb.cells if c.get("id") in keep]
    assert {c.id for c in nb.cells} == keep
    monkeypatch.setenv("BATCHLAB_IMPL", str(skeleton_impl))
    monkeypatch.delenv("BATCHLAB_STRICT", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    outputs = {c.id: c.outputs for c in nb.cells}
    stderr = [(cid, o.text) for cid, outs in outputs.items() for o in outs
              if o.output_type == "stream" and o.name == "stderr"]
    assert stderr == [], stderr
    text = {cid: "".join(o.get("text", "") for o in outs if o.output_type == "stream") for cid, outs in outputs.items()}
    assert "TODO step 05" in text["nb05-05"]
    assert "no pass returned a report" in text["nb05-07"]
    assert "pass 2 returned no report" in text["nb05-10"] and "None" not in text["nb05-10"]
    assert any(o.output_type == "display_data" and "image/png" in o.data for o in outputs["nb05-08"])
