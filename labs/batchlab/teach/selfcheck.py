"""In-notebook checks: ``check("checkpoint")`` runs the grader's tests of one step on the student module.

Students work through ``notebooks/00..06`` and write their code in one module
(``labs/student/lab03/src/services/document_processor.py``, STYLE.md item 14).
This module gives the notebooks three things:

* :func:`load_student`: imports the implementation the kit runs by default
  (``BATCHLAB_IMPL``, else the student module) from its file, afresh on every
  call, so that an edit is picked up without restarting the kernel. Tests set
  ``BATCHLAB_IMPL`` to the reference, so the same notebooks run against it.
* :func:`student_cell`: a context manager around notebook code that calls the
  student's functions. An unfinished step (``NotImplementedError``) or a bug
  prints a short, readable note instead of stopping "Run All"; with
  ``BATCHLAB_STRICT=1`` (the notebook tests) it re-raises, so a demo cell can
  never pass by swallowing an error of the reference.
* :func:`check`: runs ``python -m pytest <kit_root>/grader --impl PATH --step STEP
  --results FILE`` in a child process (the very entry point of ``pytest grader``:
  a fresh interpreter always sees the latest edit, and a hang is killed at the
  timeout instead of freezing the kernel), reads the Gradescope-format
  ``results.json`` and shows a pass/fail summary (HTML in a notebook, text in a
  terminal). It never raises: a missing grader, a timeout or a crash become a
  readable message. Its headline names the step ("5/5 public checks of step 01
  passed"), so a green step is never mistaken for full marks; the number of
  hidden scenarios is said once, by the whole grader's run (``pytest grader``),
  not after every step (otter-grader #138; issue 8 item 7).

* :func:`work_dir`: the notebooks' scratch folder (run directories, ledgers,
  sinks: up to a few MB per notebook), removed when the kernel exits.

``batchlab check STEP`` is the same function on the command line.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import EXIT_FAILED, EXIT_OK, KitError
from ..host import environ_snapshot, require_supported_platform
from ..paths import default_impl, kit_root
from ..steps import STEPS, UnknownStepError, normalize_step, step_number  # noqa: F401 (re-exported)
from .grading import grader_command

require_supported_platform()  # native Windows: the notebooks' first cell stops here with the unified error

#: What each step asks the student to write (shown by :func:`overview`).
STEP_TITLES: dict[str, str] = {
    "checkpoint": "状态机与检查点 (CheckpointStore)",
    "idempotency": "幂等键 (make_idempotency_key)",
    "backoff": "重试、指数退避与抖动 (backoff_delay, make_retrying)",
    "concurrency": "文档级并发与降级 (process_document, run_bounded)",
    "resume": "故障注入与断点续传 (process_documents_batch)",
    "metrics": "指标与报告 (BatchReport)",
}
#: Steps whose code lives in another step's region: step 06 reports what step 05's ``BatchReport`` says.
STEP_NEEDS: dict[str, str] = {"06": "05"}
DEFAULT_TIMEOUT_S = 300.0
STRICT_ENV = "BATCHLAB_STRICT"
TIMEOUT_ENV = "BATCHLAB_CHECK_TIMEOUT"
MODULE_NAME = "student_document_processor"
_OUTPUT_CAP = 4000


# ---------------------------------------------------------------------------
# Importing the student's module from notebooks
# ---------------------------------------------------------------------------


def impl_path(path: str | Path | None = None) -> Path:
    """The implementation file: ``path`` if given, else ``BATCHLAB_IMPL``, else the student module."""
    return Path(path).resolve() if path is not None else default_impl()


def load_student(path: str | Path | None = None) -> ModuleType:
    """Import the implementation file afresh (a new module object on every call).

    Call it at the top of every cell that uses your code, so that the cell runs
    your latest edit without a kernel restart.
    """
    from ..worker import load_impl

    return load_impl(impl_path(path), name=MODULE_NAME)


def work_dir(prefix: str = "lesson15-") -> Path:
    """A fresh temporary folder for a notebook's runs, removed when this Python process (the kernel) ends.

    Each notebook run writes run directories, ledgers and sinks (up to about 8 MB);
    without this they piled up in the temporary folder, one per run. Two mechanisms:

    * an ``atexit`` hook removes it on a normal exit (kernel shutdown or restart);
    * a small reaper process removes it however the kernel ends, SIGKILL included
      (``jupyter_client``'s ``shutdown_kernel(now=True)``, which nbval uses, an
      out-of-memory kill): it blocks reading a pipe whose only write end this
      process holds, and the kernel's death closes that pipe. The reaper runs in a
      session of its own, so a kill of the kernel's process group spares it.

    Worker children write into the folder but never remove it.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(_remove_work_dir, path, os.getpid())
    _start_reaper(path)
    return path


#: Write ends of the reapers' pipes, held (never written) for the life of the process, and the reapers
#: themselves (kept referenced: a collected Popen that still runs warns "subprocess is still running").
_REAPER_PIPES: list[int] = []
_REAPERS: list[subprocess.Popen[bytes]] = []
_REAPER_CODE = ("import os, shutil, sys\n"
                "while os.read(0, 1):\n"  # EOF once every write end is closed: the owner has ended
                "    pass\n"
                "shutil.rmtree(sys.argv[1], ignore_errors=True)\n")


def _start_reaper(path: Path) -> None:
    try:
        read_end, write_end = os.pipe()  # not inheritable: other children never hold the write end
    except OSError:
        return
    try:
        reaper = subprocess.Popen([sys.executable, "-c", _REAPER_CODE, str(path)], stdin=read_end,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError:  # no reaper (say, out of processes): the atexit hook still covers a normal exit
        os.close(write_end)
        return
    finally:
        os.close(read_end)
    _REAPER_PIPES.append(write_end)
    _REAPERS.append(reaper)


def _remove_work_dir(path: Path, owner_pid: int) -> None:
    if os.getpid() != owner_pid:  # a forked child inherits atexit hooks: only the owner cleans up
        return
    shutil.rmtree(path, ignore_errors=True)


def strict() -> bool:
    """True when errors in student cells must propagate (the kit's notebook tests set it)."""
    return os.environ.get(STRICT_ENV, "") not in ("", "0", "false", "no")


@dataclass
class CellNote:
    """What :func:`student_cell` caught: shown in place of a traceback."""

    label: str
    error: BaseException | None = None

    @property
    def todo(self) -> bool:
        return isinstance(self.error, NotImplementedError)

    def text(self) -> str:
        if self.error is None:
            return ""
        if self.todo:
            return f"[{self.label}] 尚未完成 (TODO): {self.error}\n完成模块中的这一步后，重新运行本单元即可。"
        where = _student_frame(self.error)
        return (f"[{self.label}] 你的代码抛出了异常 (exception): {type(self.error).__name__}: {self.error}"
                + (f"\n  位置 (where): {where}" if where else "")
                + "\n修改模块后重新运行本单元；完整的错误栈 (traceback) 可用 %tb 查看，或运行 check()。")

    def _repr_html_(self) -> str:
        color = "#8a6d00" if self.todo else "#b00020"
        return (f'<pre style="border-left:4px solid {color};padding:6px 10px;white-space:pre-wrap">'
                f"{html.escape(self.text())}</pre>")

    def __repr__(self) -> str:
        return self.text()


def _student_frame(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    impl = str(impl_path())
    for frame in reversed(frames):
        if frame.filename == impl:
            return f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}"
    return ""


@contextlib.contextmanager
def student_cell(label: str = "your code") -> Iterator[CellNote]:
    """Run notebook code that calls the student's module; an error becomes a note, not a stopped notebook.

    With ``BATCHLAB_STRICT=1`` every error propagates, so the kit's notebook
    tests fail when the reference cannot run a demo.
    """
    note = CellNote(label)
    try:
        yield note
    except Exception as exc:  # noqa: BLE001 - anything the student's code raises is shown, not fatal
        if strict():
            raise
        note.error = exc
        _display(note)


def _display(obj: Any) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import display

        if get_ipython() is not None:
            display(obj)
            return
    except ImportError:
        pass
    print(repr(obj))


# ---------------------------------------------------------------------------
# What is still TODO
# ---------------------------------------------------------------------------

_TODO_RE = re.compile(r"raise NotImplementedError\(\s*['\"]TODO step (\d\d)")


@dataclass
class Overview:
    """Which steps of the implementation file still contain a ``TODO`` (from its source, nothing run)."""

    impl: Path
    todo: dict[str, int]
    error: str | None = None

    def rows(self) -> list[tuple[str, str, str, bool]]:
        return [(num, name, STEP_TITLES[name], self.todo.get(num, 0) == 0) for num, name in STEPS.items()]

    def text(self) -> str:
        if self.error:
            return f"cannot read {self.impl}: {self.error}"
        lines = [f"implementation: {self.impl}"]
        for num, name, title, done in self.rows():
            mark = "done" if done else f"TODO x{self.todo.get(num, 0)}"
            lines.append(f"  {num} {name:<12} {mark:<8} {title}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        if self.error:
            return f"<pre>{html.escape(self.text())}</pre>"
        body = "".join(
            f"<tr><td>{num}</td><td><code>{name}</code></td><td>{html.escape(title)}</td>"
            f"<td style='color:{'#137333' if done else '#8a6d00'}'>"
            f"{'已完成 (no TODO left)' if done else f'待完成 (TODO x{self.todo.get(num, 0)})'}</td></tr>"
            for num, name, title, done in self.rows())
        return (f"<p><code>{html.escape(str(self.impl))}</code></p><table><tr><th>#</th><th>step</th>"
                f"<th>内容</th><th>状态</th></tr>{body}</table>")

    def __repr__(self) -> str:
        return self.text()


def overview(path: str | Path | None = None) -> Overview:
    """Count the ``TODO step NN`` placeholders left in the implementation file, per step."""
    impl = impl_path(path)
    try:
        source = impl.read_text(encoding="utf-8")
    except OSError as exc:
        return Overview(impl, {}, error=str(exc))
    todo: dict[str, int] = {}
    for num in _TODO_RE.findall(source):
        todo[num] = todo.get(num, 0) + 1
    for step, needs in STEP_NEEDS.items():  # a step without code of its own is as done as the step it reads
        todo[step] = todo.get(step, 0) + todo.get(needs, 0)
    return Overview(impl, todo)


# ---------------------------------------------------------------------------
# check(step)
# ---------------------------------------------------------------------------


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
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            result.message = (f"the grader did not finish within {timeout_s:g} s and was stopped. "
                              "Does your code hang (a lock never released, an endless retry loop)?\n"
                              + _tail(out.decode("utf-8", "replace")))
            _read_results(result, results_file, partial=True)
            result.status = "error"
            return
        finally:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
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


# ---------------------------------------------------------------------------
# Command line: batchlab check STEP
# ---------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    name = normalize_step(args.step)  # a bad step is bad input: unified error, exit 2
    if args.impl is not None and not Path(args.impl).is_file():
        raise KitError(f"{args.impl!r} is not a file", code="file_not_found", details={"path": str(args.impl)},
                       hints=["Check the path of --impl."])
    result = check(name, impl=args.impl, timeout_s=args.timeout)
    print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2) if args.json else result.text())
    return EXIT_OK if result.ok else EXIT_FAILED


def add_parser(subparsers: Any) -> None:
    """Register ``batchlab check STEP`` (see ``batchlab.cli.EXTENSIONS``)."""
    p = subparsers.add_parser("check", help="run the grader's public tests of one step on the student module")
    p.add_argument("step", help=f"one of {', '.join(STEPS.values())} (or 01-06)")
    p.add_argument("--impl", default=None, help="implementation file (default: BATCHLAB_IMPL, else the student module)")
    p.add_argument("--timeout", type=float, default=None, help=f"seconds (default {DEFAULT_TIMEOUT_S:g})")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_check)


# ---------------------------------------------------------------------------
# Runs from notebooks
# ---------------------------------------------------------------------------


def show_passes(passes: Any, *, stderr_lines: int = 12) -> list[str]:
    """Print one line per pass of a run (``runner.PassResult``); explain a pass that failed.

    A pass that raised, failed to import or timed out prints the end of the
    worker's stderr (the student's traceback). With ``BATCHLAB_STRICT=1`` such a
    pass raises ``RuntimeError``, so a notebook test cannot pass on a broken run.
    """
    lines: list[str] = []
    broken: list[str] = []
    for p in passes:
        line = f"pass {p.pass_no}: {p.outcome} after {p.duration_s:.2f} s"
        if p.sigkilled:
            line += f" (SIGKILL, crash plan {p.crash.kind}" + (f" at {p.crash.at})" if p.crash.at else ")")
        lines.append(line)
        if p.outcome in ("raised", "import error", "timeout", "bad input") or p.outcome.startswith(("exit", "signal")):
            rows = p.stderr.strip().splitlines()
            todo = [row for row in rows if row.startswith("NotImplementedError")]
            if todo:  # an unfinished step: the TODO line says everything, the asyncio frames nothing
                lines.append(f"    尚未完成 (TODO): {todo[-1].partition(': ')[2] or todo[-1]}")
            else:
                lines.append("    这一轮没有正常结束，worker 的错误输出 (stderr) 末尾：")
                lines += [f"    | {row}" for row in rows[-stderr_lines:]]
            broken.append(line)
    print("\n".join(lines))
    if broken and strict():
        raise RuntimeError("a pass did not end as planned: " + "; ".join(broken))
    return lines
