"""In-notebook checks: ``check("checkpoint")`` runs the grader's tests of one step on the student module.

:func:`check` runs ``python -m pytest <kit_root>/grader --impl PATH --step STEP --results FILE``
(the command line :func:`batchlab.teach.grading.grader_command` builds) in a child process (the
very entry point of ``pytest grader``: a fresh interpreter always sees the latest edit, and a hang
is killed at the timeout instead of freezing the kernel), reads the Gradescope-format
``results.json`` and shows a pass/fail summary (HTML in a notebook, text in a terminal). It never
raises: a missing grader, a timeout or a crash become a readable message. Its headline names the
step ("5/5 public checks of step 01 passed"), so a green step is never mistaken for full marks;
the number of hidden scenarios is said once, by the whole grader's run (``pytest grader``), not
after every step (otter-grader #138; issue 8 item 7).

The notebooks' other helpers (``load_student``, ``student_cell``, ``work_dir``...) are in
:mod:`.notebook`. ``batchlab check STEP`` is the same function on the command line.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..childproc import environ_snapshot, kill_group
from ..errors import EXIT_FAILED, EXIT_OK, KitError
from ..paths import kit_root
from ..steps import STEPS, UnknownStepError, normalize_step, step_number  # noqa: F401 (re-exported)
from .grading import grader_command
from .notebook import STRICT_ENV, impl_path, strict

DEFAULT_TIMEOUT_S = 300.0
TIMEOUT_ENV = "BATCHLAB_CHECK_TIMEOUT"
_OUTPUT_CAP = 4000


@dataclass
class TestOutcome:
    """One grader test, as results.json reports it."""

    name: str
    passed: bool
    score: float
    max_score: float
    output: str = ""


@dataclass
class CheckResult:
    """The outcome of :func:`check`: a summary for people and the raw figures for programs.

    ``status`` is ``passed`` (every public test passed), ``failed`` (some did not)
    or ``error`` (the grader could not run: see ``message``).
    """

    step: str
    impl: Path
    status: str
    tests: list[TestOutcome] = field(default_factory=list)
    hidden_scenarios: int = 0
    score: float = 0.0
    max_score: float = 0.0
    duration_s: float = 0.0
    message: str = ""
    grader_errors: list[str] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(t.passed for t in self.tests)

    @property
    def total(self) -> int:
        return len(self.tests)

    @property
    def ok(self) -> bool:
        return self.status == "passed"

    def headline(self) -> str:
        """The one line that matters, in both languages of the kit."""
        if self.status == "error":
            return f"check({self.step!r}) could not run the grader (see below)."
        return f"{self.passed}/{self.total} public checks of step {step_number(self.step)} passed."

    def headline_zh(self) -> str:
        if self.status == "error":
            return "检查未能运行 (grader error)，见下方说明。"
        if self.ok:
            last = step_number(self.step) == max(STEPS)
            return (f"第 {step_number(self.step)} 步的公开检查全部通过 ({self.passed}/{self.total})。"
                    + ("所有步骤都完成了：在终端运行 pytest grader 查看总分。" if last else "可以进入下一本笔记本。"))
        return (f"公开检查通过 {self.passed}/{self.total}。阅读下面失败项的说明，修改模块后重新运行 "
                f'check("{self.step}")，无需重启内核。')

    def text(self) -> str:
        lines = [f"step {step_number(self.step)} {self.step} | {self.impl}",
                 self.headline(), self.headline_zh()]
        for t in self.tests:
            mark = "PASS" if t.passed else "FAIL"
            lines.append(f"  {mark}  {t.name}  ({t.score:g}/{t.max_score:g})")
            if not t.passed and t.output:
                lines += [f"        {line}" for line in _cap(t.output, 1200).splitlines()]
        if self.status == "error" and self.message:
            lines.append(self.message)
        for err in self.grader_errors:
            lines.append(f"  grader error: {err}")
        lines.append(f"({self.duration_s:.1f} s)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text()

    def __str__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        green, red, amber = "#137333", "#b00020", "#8a6d00"
        color = green if self.ok else (amber if self.status == "error" else red)
        rows = []
        for t in self.tests:
            mark = (f"<span style='color:{green}'>&#10004; 通过</span>" if t.passed
                    else f"<span style='color:{red}'>&#10008; 未通过</span>")
            detail = ""
            if not t.passed and t.output:
                detail = (f"<details><summary>说明 (feedback)</summary><pre style='white-space:pre-wrap'>"
                          f"{html.escape(_cap(t.output, 3000))}</pre></details>")
            rows.append(f"<tr><td>{mark}</td><td><code>{html.escape(t.name)}</code>{detail}</td>"
                        f"<td>{t.score:g}/{t.max_score:g}</td></tr>")
        table = (f"<table><tr><th>结果</th><th>检查 (check)</th><th>分数</th></tr>{''.join(rows)}</table>"
                 if rows else "")
        extra = ""
        if self.status == "error" and self.message:
            extra += f"<pre style='white-space:pre-wrap'>{html.escape(_cap(self.message, 3000))}</pre>"
        for err in self.grader_errors:
            extra += f"<p style='color:{amber}'>grader error: {html.escape(err)}</p>"
        return (f"<div style='border-left:6px solid {color};padding:6px 12px'>"
                f"<p><b>step {step_number(self.step)} <code>{self.step}</code></b> "
                f"<small>({html.escape(str(self.impl))}, {self.duration_s:.1f} s)</small></p>"
                f"<p style='color:{color};font-size:1.15em'><b>{html.escape(self.headline())}</b></p>"
                f"<p>{html.escape(self.headline_zh())}</p>{table}{extra}</div>")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["impl"] = str(self.impl)
        data.update(passed=self.passed, total=self.total, headline=self.headline())
        return data


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n... [{len(text) - limit} more characters]"


def _tail(text: str, limit: int = _OUTPUT_CAP) -> str:
    return text if len(text) <= limit else f"[... {len(text) - limit} characters before]\n" + text[-limit:]


def check(
    step: str | int,
    *,
    impl: str | Path | None = None,
    timeout_s: float | None = None,
    grader_dir: str | Path | None = None,
) -> CheckResult:
    """Run the grader's public tests of ``step`` on the student module and summarize them. Never raises.

    ``impl`` defaults to ``BATCHLAB_IMPL``, else the student module; ``timeout_s``
    to ``BATCHLAB_CHECK_TIMEOUT``, else 300 s. The one exception to "never raises"
    is ``BATCHLAB_STRICT=1`` (set by the kit's notebook tests only): then a result
    that is not all green raises ``AssertionError``, so the notebooks' own test
    proves that every check cell turns green with the reference.
    """
    started = time.monotonic()
    path = impl_path(impl)
    try:
        name = normalize_step(step)
    except UnknownStepError as exc:
        return CheckResult(step=str(step), impl=path, status="error", message=exc.message + " " + " ".join(exc.hints))
    result = CheckResult(step=name, impl=path, status="error")
    try:
        _run_grader(result, grader_dir=Path(grader_dir) if grader_dir else kit_root() / "grader",
                    timeout_s=timeout_s if timeout_s is not None else float(
                        os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))
    except Exception as exc:  # noqa: BLE001 - check() must never raise into a notebook
        result.status = "error"
        result.message = f"unexpected error in check(): {type(exc).__name__}: {exc}"
    result.duration_s = time.monotonic() - started
    if strict() and not result.ok:  # the kit's notebook tests: the reference must be all green
        raise AssertionError(result.text())
    return result


def _run_grader(result: CheckResult, *, grader_dir: Path, timeout_s: float) -> None:
    if not result.impl.is_file():
        result.message = f"implementation file not found: {result.impl}"
        return
    if not grader_dir.is_dir():
        result.message = (f"the grader is not installed at {grader_dir}. "
                          "Update the kit (git pull) or ask your teacher for the grader folder.")
        return
    with tempfile.TemporaryDirectory(prefix="batchlab-check-") as tmp:
        results_file = Path(tmp) / "results.json"
        cmd = grader_command(impl=result.impl, step=result.step, results=results_file, grader_dir=grader_dir,
                             extra=["--color=no"])
        env = {**environ_snapshot(), "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", "PY_COLORS": "0"}
        env.pop(STRICT_ENV, None)
        proc = subprocess.Popen(cmd, cwd=str(grader_dir.parent), env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            out, _ = proc.communicate()
            result.message = (f"the grader did not finish within {timeout_s:g} s and was stopped. "
                              "Does your code hang (a lock never released, an endless retry loop)?\n"
                              + _tail(out.decode("utf-8", "replace")))
            _read_results(result, results_file, partial=True)
            result.status = "error"
            return
        finally:
            if proc.poll() is None:
                kill_group(proc)
        output = out.decode("utf-8", "replace")
        if not results_file.exists():
            result.message = (f"the grader exited with code {proc.returncode} without writing results.json:\n"
                              + _tail(output))
            return
        _read_results(result, results_file)
        if result.status == "error" and not result.message:
            result.message = _tail(output)


def _read_results(result: CheckResult, results_file: Path, *, partial: bool = False) -> None:
    try:
        data = json.loads(results_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        if not partial:
            result.message = f"cannot read the grader's results.json: {exc}"
        return
    tests = data.get("tests") or []
    result.tests = [
        TestOutcome(
            name=str(t.get("name", "?")),
            passed=_test_passed(t),
            score=float(t.get("score", 0) or 0),
            max_score=float(t.get("max_score", 0) or 0),
            output=str(t.get("output", "") or ""),
        )
        for t in tests if isinstance(t, dict)
    ]
    extra = data.get("extra_data") or {}
    result.hidden_scenarios = int(extra.get("hidden_scenarios", 0) or 0)
    result.grader_errors = [str(e) for e in extra.get("grader_errors") or []]
    result.score = float(data.get("score", sum(t.score for t in result.tests)) or 0)
    result.max_score = sum(t.max_score for t in result.tests)
    if not result.tests:
        result.status = "error"
        result.message = result.message or f"the grader ran no test for step {result.step!r}"
    elif result.grader_errors:
        result.status = "error"
        result.message = "the grader reported errors of its own (not your code's fault)"
    else:
        result.status = "passed" if all(t.passed for t in result.tests) else "failed"


def _test_passed(test: dict[str, Any]) -> bool:
    status = test.get("status")
    if status in ("passed", "failed"):
        return status == "passed"
    return float(test.get("score", 0) or 0) >= float(test.get("max_score", 0) or 0)


def cmd_check(args: argparse.Namespace) -> int:
    name = normalize_step(args.step)  # a bad step is bad input: unified error, exit 2
    if args.impl is not None and not Path(args.impl).is_file():
        raise KitError(f"{args.impl!r} is not a file", code="file_not_found", details={"path": str(args.impl)},
                       hints=["Check the path of --impl."])
    result = check(name, impl=args.impl, timeout_s=args.timeout)
    print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2) if args.json else result.text())
    return EXIT_OK if result.ok else EXIT_FAILED


def add_parser(subparsers: Any) -> None:
    """Register ``batchlab check STEP`` (see ``batchlab.cli.parser.EXTENSIONS``)."""
    p = subparsers.add_parser("check", help="run the grader's public tests of one step on the student module")
    p.add_argument("step", help=f"one of {', '.join(STEPS.values())} (or 01-06)")
    p.add_argument("--impl", default=None, help="implementation file (default: BATCHLAB_IMPL, else the student module)")
    p.add_argument("--timeout", type=float, default=None, help=f"seconds (default {DEFAULT_TIMEOUT_S:g})")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_check)
