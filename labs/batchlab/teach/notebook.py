"""What the step notebooks import: the student's module, a scratch folder, readable errors, an overview.

Students work through ``notebooks/00..06`` and write their code in one module
(``labs/student/lab03/src/services/document_processor.py``): graded code lives in the module, not
in cells. This module gives the notebooks their helpers; :mod:`.selfcheck` runs the grader's tests
of a step (``check()``):

* :func:`load_student`: imports the implementation the kit runs by default
  (``BATCHLAB_IMPL``, else the student module) from its file, afresh on every
  call, so that an edit is picked up without restarting the kernel. Tests set
  ``BATCHLAB_IMPL`` to the reference, so the same notebooks run against it.
* :func:`student_cell`: a context manager around notebook code that calls the
  student's functions. An unfinished step (``NotImplementedError``) or a bug
  prints a short, readable note instead of stopping "Run All"; with
  ``BATCHLAB_STRICT=1`` (the notebook tests) it re-raises, so a demo cell can
  never pass by swallowing an error of the reference.
* :func:`work_dir`: the notebooks' scratch folder (run directories, ledgers,
  sinks: up to a few MB per notebook), removed when the kernel exits.
* :func:`overview`: which steps still have TODOs; :func:`show_passes`: one line per pass of a run.
"""

from __future__ import annotations

import atexit
import contextlib
import html
import os
import re
import shutil
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ..host import require_supported_platform
from ..ledger import PassEnd
from ..paths import default_impl
from ..steps import STEPS

require_supported_platform()  # native Windows: the notebooks' first cell stops here with the unified error

#: What each step asks the student to write (shown by :func:`overview`).
STEP_TITLES: dict[str, str] = {
    "checkpoint": "状态机与检查点 (CheckpointStore)",
    "idempotency": "幂等键 (make_idempotency_key)",
    "backoff": "重试、指数退避与抖动、熔断 (backoff_delay, make_retrying, CircuitBreaker)",
    "concurrency": "文档级并发、调用截止时间与降级 (process_document, run_bounded)",
    "resume": "故障注入与断点续传 (process_documents_batch)",
    "metrics": "指标与报告 (BatchReport)",
}
#: Steps whose code lives in another step's region: step 06 reports what step 05's ``BatchReport`` says.
STEP_NEEDS: dict[str, str] = {"06": "05"}
STRICT_ENV = "BATCHLAB_STRICT"
MODULE_NAME = "student_document_processor"


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
        if p.end not in (PassEnd.OK, PassEnd.KILLED, PassEnd.STOPPED):  # it raised, hung, or died on its own
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
