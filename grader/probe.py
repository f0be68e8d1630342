"""The probe: runs one named check against an implementation file, inside a sandboxed child process.

``python grader/probe.py IMPL CHECK ARGS_JSON VERDICT_JSON``

Student code never runs in the grader's own process (docs/design.md, principle 13): the
parent (:mod:`grader.sandbox`) starts this script with a timeout, resource
limits and capped output, and reads back one JSON verdict::

    {"check": ..., "status": "ok" | "todo" | "student_error" | "import_error" | "grader_error",
     "data": ..., "error": {"type", "message", "traceback"}}

The verdict is written to ``VERDICT_JSON`` (and printed as the last line of
stdout, for a person reading the log). The probe only *collects* facts (keys,
delays, checkpoint entries, what a batch run returned); the parent judges them,
so every verdict message is written in one place. The checks that run documents
through the harness (``documents``, ``deadline``, ``batch_pass``) get their service,
sink and ledger as proxies to the parent (``harness_fd`` in their arguments,
:mod:`grader.stepharness`): what those calls and commits did, only the parent records.

The checks live by role beside this file: :mod:`grader.probe_common` (student
errors, reading student values), :mod:`grader.probe_checkpoint` (step 01),
:mod:`grader.probe_cost` (the checkpoint hot spot), :mod:`grader.probe_functions`
(import, keys, backoff, retrying), :mod:`grader.probe_breaker` (the circuit breaker,
the per-call deadline) and :mod:`grader.probe_batch` (documents and
a batch pass). They import the harness (``batchlab``: its test doubles in
:mod:`batchlab.testing`, its proxies in :mod:`batchlab.remote`) and each other,
nothing else of the grader.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __name__ == "__main__" and not __package__:  # run by path: the folder above makes `grader` importable
    sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from batchlab.worker import load_impl  # noqa: E402 - after the path fix above

from grader.probe_batch import check_batch_pass, check_documents  # noqa: E402
from grader.probe_breaker import check_breaker, check_deadline  # noqa: E402
from grader.probe_checkpoint import (  # noqa: E402
    check_checkpoint_dump,
    check_checkpoint_hammer,
    check_checkpoint_namespaces,
    check_checkpoint_script,
)
from grader.probe_common import StudentCodeError  # noqa: E402
from grader.probe_cost import check_checkpoint_cost  # noqa: E402
from grader.probe_functions import check_backoff, check_import, check_keys, check_retrying  # noqa: E402

IMPL_PATH = ""

CHECKS: dict[str, Callable[[Any, dict[str, Any]], Any]] = {
    "import": check_import,
    "checkpoint_script": check_checkpoint_script,
    "checkpoint_namespaces": check_checkpoint_namespaces,
    "checkpoint_hammer": check_checkpoint_hammer,
    "checkpoint_dump": check_checkpoint_dump,
    "checkpoint_cost": check_checkpoint_cost,
    "keys": check_keys,
    "backoff": check_backoff,
    "retrying": check_retrying,
    "breaker": check_breaker,
    "deadline": check_deadline,
    "documents": check_documents,
    "batch_pass": check_batch_pass,
}


def _student_frames(tb_text: str) -> bool:
    return bool(IMPL_PATH) and IMPL_PATH in tb_text


def _error(exc: BaseException) -> dict[str, Any]:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=12))
    return {"type": type(exc).__name__, "message": str(exc)[:2000], "traceback": tb[-4000:]}


def run(impl: str, check: str, args: dict[str, Any]) -> dict[str, Any]:
    """Import the implementation and run one check; the verdict says whose error anything raised was."""
    global IMPL_PATH
    IMPL_PATH = str(Path(impl).resolve())
    verdict: dict[str, Any] = {"check": check}
    try:
        module = load_impl(impl)
    except BaseException as exc:  # noqa: BLE001 - anything at import is the student's error
        return {**verdict, "status": "import_error", "error": _error(exc)}
    try:
        verdict["data"] = CHECKS[check](module, args)
        verdict["status"] = "ok"
    except StudentCodeError as exc:
        original = exc.original
        status = "todo" if isinstance(original, NotImplementedError) else "student_error"
        verdict.update(status=status, error=_error(original))
    except BaseException as exc:  # noqa: BLE001
        err = _error(exc)
        # A failure deep inside the harness called by student code is still the student's.
        verdict.update(status="student_error" if _student_frames(err["traceback"]) else "grader_error", error=err)
    return verdict


def main(argv: list[str]) -> int:
    impl, check, args_path, verdict_path = argv[1:5]
    args = json.loads(Path(args_path).read_text(encoding="utf-8"))
    verdict = run(impl, check, args)
    text = json.dumps(verdict, ensure_ascii=False, default=str)
    tmp = Path(verdict_path + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, verdict_path)
    sys.stdout.flush()
    print("\n" + text[:2000], flush=True)
    sys.stderr.flush()
    # Leave at once: a thread the student started must not keep the probe (and the grader) waiting.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
