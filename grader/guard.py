"""The session's protections around student code: which sandbox, what it hides, and whether the kit held.

The conftest calls these once per grading session: :func:`session_sandbox` at the start (what no child may
see), :func:`snapshot_kit` before any child runs, and :func:`kit_changes` after the last one has gone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from batchlab.errors import KitError
from batchlab.paths import kit_root

from . import integrity
from .bubblewrap import Sandbox, detect, git_dirs, submission_folder
from .sandbox import GRADER_DIR, probe_files


def session_sandbox(impl: Path, results_dir: Path, *, off: bool = False,
                    extra_hidden: Sequence[Path] = ()) -> Sandbox:
    """The session's sandbox: what no child may see (the grader, earlier results, the reference, the kit's
    history, the submission's folder with its neighbours, ``--sandbox-hide``), and what it may (the probe's
    files, the submission)."""
    hidden = [GRADER_DIR, results_dir]
    for root in {kit_root(), GRADER_DIR.parent}:
        hidden += [root / "labs" / "solution", *git_dirs(root)]
    folder = submission_folder(impl, keep=[GRADER_DIR.parent, kit_root(), results_dir])
    hidden += [folder] if folder else []
    return detect(off=off).hiding(hidden=[*hidden, *extra_hidden], shown=[*probe_files(), impl])


def refusal(sandbox: Sandbox) -> KitError:
    """``--require-sandbox`` where there is none: the unified error."""
    return KitError(f"--require-sandbox: no sandbox here: {sandbox.reason}", code="sandbox_unavailable",
                    details={"sandbox": sandbox.info()},
                    hints=["Install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap) and check that "
                           "`bwrap --ro-bind / / --unshare-pid --unshare-net true` runs for this user.",
                           "Or grade without --require-sandbox: the results then state the weaker guarantee."])


def snapshot_kit() -> integrity.KitSnapshot:
    """The grader's and the harness's files as grading begins."""
    return integrity.take(GRADER_DIR.parent, (GRADER_DIR, kit_root() / "labs" / "batchlab"))


def kit_changes(snapshot: integrity.KitSnapshot | None, sandbox: Sandbox, results_dir: Path) -> list[str]:
    """What changed in the kit during the session. Without a sandbox it was the submission (it ran with the
    grader's permissions): put it back. With one, no child could write there: only report it (someone edited
    the kit while it was grading)."""
    if snapshot is None:
        return []
    if sandbox.active:
        fresh = integrity.take(snapshot.root, snapshot.folders)
        return [f"changed during grading (not by the submission): {p}" for p, b in fresh.files.items()
                if snapshot.files.get(p) != b]
    return snapshot.restore(ignore=(results_dir,))
