"""pytest wiring of the grader: options, the task pool, scoring, ``results.json`` and the score table.

``pytest grader`` grades the student module; options (see ``grader/README.md``):

``--impl PATH``        the implementation (else ``$BATCHLAB_IMPL``, else the student module)
``--results FILE``     where results go (default ``grader-results/results.json`` under the current directory)
``--hidden``           also run the hidden scenarios in ``grader/hidden/``
``--step STEP``        only that step's tests (``checkpoint`` or ``01`` ...); scenarios are left out
``--thresholds FILE``  another threshold file (default: the kit's ``batchlab/thresholds.toml``)
``--jobs N``           child processes run at once (default 3)
``--timeout-scale X``  multiply every timeout (slow machines)
``--no-sandbox``       run student code without bubblewrap (debugging; also ``BATCHLAB_SANDBOX=off``)
``--require-sandbox``  refuse to grade where bubblewrap cannot run (unified error, exit 2, results still written)
``--sandbox-hide DIR`` one more folder no child may see (repeatable; e.g. the other submissions' folder)

This conftest is an *initial* conftest whenever pytest is pointed at ``grader``
or at a file inside it, so the options work for ``pytest grader/test_x.py`` too.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, NoReturn

import pytest
from batchlab.paths import student_module

from . import guard
from .reaper import adopt_orphans, sweep_children
from .results import GraderError, score_table, write_results
from .sandbox import use_sandbox
from .scenarios import PUBLIC_SCENARIOS
from .session import COLLECT_ERRORS, SESSION, Grade, GraderSession, record_report, session_summary, step_of
from .steps import parse_step
from .tasks import MARKER, Context, Scheduler
from .thresholds import THRESHOLDS_FILE, load_thresholds

GRADER_DIR = Path(__file__).resolve().parent


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("batchlab grader")
    group.addoption("--impl", default=None, help="implementation file to grade")
    group.addoption("--results", default=None, help="results.json path (default grader-results/results.json)")
    group.addoption("--hidden", action="store_true", default=False, help="also run the hidden scenarios")
    group.addoption("--step", default=None, help="only this step's tests: checkpoint|idempotency|... or 01..06")
    group.addoption("--thresholds", default=None, help="threshold file (default: the kit's thresholds.toml)")
    group.addoption("--jobs", type=int, default=3, help="child processes run at once")
    group.addoption("--timeout-scale", type=float, default=1.0, help="multiply every timeout")
    group.addoption("--no-sandbox", action="store_true", default=False,
                    help="run student code without bubblewrap (debugging; also BATCHLAB_SANDBOX=off)")
    group.addoption("--require-sandbox", action="store_true", default=False,
                    help="fail (exit 2) where bubblewrap cannot run, instead of grading with the limits alone")
    group.addoption("--sandbox-hide", action="append", default=[], metavar="DIR",
                    help="one more folder that no child running student code may see (repeatable)")


def _resolve(config: pytest.Config, value: str | None) -> Path | None:
    if value is None:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else Path(config.invocation_params.dir) / path


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "points(n): points of a graded test")
    config.addinivalue_line("markers", "step(name): the lesson step a test belongs to")
    config.addinivalue_line("markers", "task(name): the grader task whose facts the test judges")
    config.addinivalue_line("markers", "scenario: an acceptance scenario (no step)")
    if not hasattr(config.option, "impl"):
        return
    try:
        step = parse_step(config.option.step) if config.option.step else None
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    impl = _resolve(config, config.option.impl) or (
        Path(os.environ["BATCHLAB_IMPL"]) if os.environ.get("BATCHLAB_IMPL") else student_module())
    results_path = _resolve(config, config.option.results) or (
        Path(config.invocation_params.dir) / "grader-results" / "results.json")
    thresholds_file = _resolve(config, config.option.thresholds) or THRESHOLDS_FILE
    try:
        thresholds = load_thresholds(thresholds_file)
    except (OSError, ValueError) as exc:
        raise pytest.UsageError(f"cannot read thresholds {thresholds_file}: {exc}") from None
    results_dir = results_path.parent
    _clean(results_dir)
    ctx = Context(impl=impl.resolve(), results_dir=results_dir.resolve(), thresholds=thresholds,
                  timeout_scale=config.option.timeout_scale)
    session = GraderSession(ctx=ctx, scheduler=Scheduler(ctx, jobs=max(1, config.option.jobs)),
                            results_path=results_path, step=step, hidden=config.option.hidden,
                            sandbox=guard.session_sandbox(
                                ctx.impl, ctx.results_dir, off=config.option.no_sandbox,
                                extra_hidden=[p for p in (_resolve(config, v) for v in config.option.sandbox_hide) if p]))
    use_sandbox(session.sandbox)
    adopt_orphans()
    session.kit = guard.snapshot_kit()
    if not impl.is_file():
        session.impl_problem = f"the implementation file {impl} does not exist"
    config.stash[SESSION] = session
    if config.option.require_sandbox and not session.sandbox.active:
        _refuse_without_sandbox(session)
    # Until the session ends, results.json says that grading did not finish (a grader killed halfway leaves that).
    write_results(results_path, session_summary(session, unfinished=True))


def _refuse_without_sandbox(session: GraderSession) -> NoReturn:
    error = guard.refusal(session.sandbox)
    session.grader_errors.append(error.to_json())
    write_results(session.results_path, session_summary(session))
    session.written = True
    pytest.exit(error.to_json(), returncode=2)


def _clean(results_dir: Path) -> None:
    """Remove what an earlier grader run left: only folders it marked as its own, and its scenario pictures."""
    for name in ("runs", "work", "metrics", "runs-grader", "work-grader", "metrics-grader"):
        if (results_dir / name / MARKER).is_file():
            shutil.rmtree(results_dir / name, ignore_errors=True)
    for sc in (*PUBLIC_SCENARIOS, *_hidden_scenarios()):
        (results_dir / f"{sc.name}.timeline.png").unlink(missing_ok=True)


def _hidden_scenarios() -> tuple[Any, ...]:
    try:
        from .hidden.scenarios import HIDDEN_SCENARIOS
    except ImportError:  # a student distribution has no hidden scenarios
        return ()
    return HIDDEN_SCENARIOS


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.name == "hidden" and collection_path.parent == GRADER_DIR and not config.getoption(
            "hidden", default=False):
        return True
    return None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    gs = config.stash.get(SESSION, None)
    if gs is None:
        return
    if gs.step:
        keep = [i for i in items if step_of(i) == gs.step]
        dropped = [i for i in items if step_of(i) != gs.step]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        items[:] = keep
    # Hidden scenarios last, so that the public ones keep their numbers and order.
    items.sort(key=lambda i: "/hidden/" in i.nodeid.replace("\\", "/"))
    if not items:
        return
    if gs.impl_problem is None:
        verdict = gs.ctx.probe("import", {}, workdir="import", timeout_s=30)
        if verdict.is_grader_error:
            gs.grader_errors.append(verdict.failure("import check"))
        elif not verdict.ok:
            gs.impl_problem = verdict.failure("the module")
        else:
            missing = [n for n, ok in verdict.data["names"].items() if not ok]
            if not verdict.data["batch_is_async"] and "process_documents_batch" not in missing:
                missing.append("process_documents_batch (must be `async def`)")
            if missing:
                gs.impl_problem = f"the module lacks {', '.join(missing)} (see the module docstring)"
    if gs.impl_problem is None:
        names = [m.args[0] for i in items for m in i.iter_markers("task")]
        gs.scheduler.submit(names)


@pytest.fixture
def grade(request: pytest.FixtureRequest) -> Grade:
    gs = request.config.stash.get(SESSION, None)
    if gs is None:
        raise GraderError("the grader session was not configured (run pytest on the grader folder)")
    return Grade(request.node, gs)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    outcome = yield
    gs = item.config.stash.get(SESSION, None)
    if gs is not None:
        record_report(item, outcome.get_result(), call, gs)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        COLLECT_ERRORS.append(f"collection of {report.nodeid or 'grader'} failed: "
                              f"{report.longreprtext[-2000:]}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    gs = session.config.stash.get(SESSION, None)
    if gs is None or gs.written:
        return
    gs.scheduler.shutdown()
    gs.left_behind = sweep_children()  # results are written only once every child of the grader is gone
    gs.kit_changed = guard.kit_changes(gs.kit, gs.sandbox, gs.ctx.results_dir)
    write_results(gs.results_path, session_summary(gs))
    gs.written = True


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    gs = config.stash.get(SESSION, None)
    if gs is None:
        return
    summary = session_summary(gs)
    tr = terminalreporter
    tr.section("grader score")
    tr.write_line(gs.sandbox.banner(), bold=not gs.sandbox.active)
    if gs.kit_changed:
        tr.write_line(f"THE KIT CHANGED DURING GRADING ({len(gs.kit_changed)} files; extra_data.kit_changed): "
                      + "; ".join(gs.kit_changed[:3]), bold=True)
    if gs.left_behind:
        tr.write_line(f"{gs.left_behind} process(es) of the submission outlived their child and were killed "
                      "at the end (double fork?)")
    for line in score_table(summary).splitlines():
        tr.write_line(line)
    tr.write_line("")
    tr.write_line(f"results: {gs.results_path}")
    tr.write_line(summary.final_line(), bold=True)
