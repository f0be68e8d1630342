"""One Gradescope run: ``python -m batchlab.grade.gradescope --root /autograder`` (what ``run_autograder`` starts).

It finds the student's ``document_processor.py`` under ``/autograder/submission`` (the shallowest one: students
upload the file, a folder or a repository), copies it into a fresh ``/autograder/work``, grades it with
``batchlab grade --exec --hidden`` as a child (the same child ``grade-all`` runs) under an overall timeout below
Gradescope's default 10 minutes, and writes ``/autograder/results/results.json`` atomically. Whatever happens
(nothing to grade, a hang past the timeout, a grader that died) there is a results file that says why:
Gradescope's own global timeout would give the student a bare failure with no feedback.

``stdout_visibility`` becomes ``after_published``: the grader's printed output includes the hidden scenarios'
failure details, which students should see only when the hidden tests are published.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from .children import grade_verb, start
from .gradebook import read_grader_results, write_atomic, zero_result
from .submissions import MODULE_NAME, Submission, read_entry

#: Gradescope's default timeout is 10 minutes for the whole run; the grader gets 8 of them.
DEFAULT_TIMEOUT_S = 480.0
GRADER_ARGS_ENV = "BATCHLAB_GRADER_ARGS"


def find_module(submission: Path) -> Path | None:
    """The shallowest ``document_processor.py`` under the submission folder."""
    found = sorted(submission.rglob(MODULE_NAME), key=lambda p: (len(p.parts), str(p)))
    return found[0] if found else None


def run(root: Path, *, timeout_s: float = DEFAULT_TIMEOUT_S, grader_args: list[str] | None = None) -> dict[str, Any]:
    """Grade the submission under ``root`` and write ``root/results/results.json``; return what was written."""
    results = root / "results" / "results.json"
    module = find_module(root / "submission")
    if module is None:
        data = zero_result(status="unreadable", sha256=None,
                           reason=f"no {MODULE_NAME} in the submission: upload the file itself, named {MODULE_NAME}")
        return _write(results, data)
    item = read_entry("submission", module)
    if not isinstance(item, Submission):
        return _write(results, zero_result(status="unreadable", reason=item.reason, sha256=None))
    work = root / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    impl = work / MODULE_NAME
    impl.write_text(item.source, encoding="utf-8")
    graded = work / "grader-results" / "results.json"
    args = grader_args if grader_args is not None else shlex.split(os.environ.get(GRADER_ARGS_ENV, ""))
    child = start("submission", grade_verb(impl, graded, hidden=True, grader_options=args), cwd=work,
                  timeout_s=timeout_s)
    while (code := child.poll(time.monotonic())) is None:
        time.sleep(0.5)
    duration = time.monotonic() - child.started
    sys.stdout.write(child.log.read_text(encoding="utf-8", errors="replace"))
    if child.timed_out:
        reason = (f"The grader did not finish within {timeout_s:g} s (a hang that its own timeouts did not end): "
                  "scored 0. Run `pytest grader` on your module to see where it hangs.")
        return _write(results, zero_result(status="timeout", reason=reason, sha256=item.sha256, duration_s=duration))
    finished = read_grader_results(graded)
    if finished is None:
        reason = f"The grader ended (exit {code}) without finished results; please tell your teacher."
        return _write(results, zero_result(status="crashed", reason=reason, sha256=item.sha256, duration_s=duration))
    finished["stdout_visibility"] = "after_published"
    finished["extra_data"]["grade_all"] = {"status": "graded", "reason": None, "sha256": item.sha256,
                                           "duration_s": round(duration, 2), "returncode": code}
    return _write(results, finished)


def _write(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    write_atomic(path, json.dumps(data, ensure_ascii=False, indent=2, default=str))
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m batchlab.grade.gradescope")
    parser.add_argument("--root", type=Path, default=Path("/autograder"))
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S)
    args = parser.parse_args(argv)
    data = run(args.root, timeout_s=args.timeout)
    print(f"\nresults.json: {data.get('score')}/{data.get('max_score')} "
          f"({data['extra_data']['grade_all']['status']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
