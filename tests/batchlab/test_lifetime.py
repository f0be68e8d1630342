"""Worker lifetime, with real processes: one worker per run directory, and a batch that stops when you stop it.

Every test waits for the state it needs (a ledger event, a lock held, a process
gone), never for a fixed delay, and SIGKILLs whatever it started in ``finally``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from batchlab.examples import make_documents, write_input
from batchlab.host import FORCE_PORTABLE_ENV, pid_alive
from batchlab.ledger import read_events
from batchlab.metrics import metrics_for_run
from batchlab.runlock import LOCK_NAME, RunDirLock, lock_is_held, read_holder

pytestmark = pytest.mark.slow

WAIT_S = 180.0  # an upper bound for the loaded machine; every wait ends as soon as its state is reached
#: Slow enough that a pass is still at work long after its first commit, on any machine.
RUN_ARGS = ("--latency-ms", "30", "--concurrency", "4", "--seed", "7")


@pytest.fixture(scope="module")
def busy_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 documents of 1-6 KB: tens of seconds of simulated service calls at 30 ms each."""
    return write_input(tmp_path_factory.mktemp("input") / "input.json",
                       make_documents(200, seed=3, min_bytes=1000, max_bytes=6000))


def wait_for(predicate: Callable[[], object], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def workers_of(run_dir: Path) -> list[int]:
    """Pids of live ``batchlab.worker`` processes of ``run_dir`` (from /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"batchlab.worker" in argv and str(run_dir).encode() in argv and pid_alive(int(entry.name)):
            pids.append(int(entry.name))
    return pids


def ledger_has(run_dir: Path, ev: str, **fields: object) -> bool:
    return any(e.get("ev") == ev and all(e.get(k) == v for k, v in fields.items())
               for e in read_events(run_dir / "ledger.jsonl"))


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "batchlab", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


class WorkerCensus:
    """Samples /proc every few milliseconds: the most workers of one run directory alive at once."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.most = 0
        self.seen: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            pids = workers_of(self.run_dir)
            self.seen.update(pids)
            self.most = max(self.most, len(pids))
            time.sleep(0.003)

    def __enter__(self) -> WorkerCensus:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def reaper() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test started: SIGKILLed (and any worker of theirs) whatever the test's outcome."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def kill_workers(run_dir: Path) -> None:
    for pid in workers_of(run_dir):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def assert_worker_events_never_interleave(run_dir: Path) -> None:
    """The ledger's worker events come in one block per worker: no two workers wrote at the same time."""
    order: list[int] = []
    for ev in read_events(run_dir / "ledger.jsonl"):
        if ev.get("ev") in ("kill", "stop", "timeout"):  # written by the parent, not by a worker
            continue
        if not order or order[-1] != ev["pid"]:
            assert ev["pid"] not in order, f"worker {ev['pid']} wrote again after worker {order[-1]} had started"
            order.append(ev["pid"])


class TestOneWorkerPerRunDirectory:
    @pytest.mark.parametrize("runs", [2, 3])
    def test_runs_started_at_once_take_turns_and_duplicate_nothing(
            self, runs: int, busy_input: Path, tmp_path: Path, reaper: list[subprocess.Popen[str]]) -> None:
        run_dir = tmp_path / "run"
        try:
            with WorkerCensus(run_dir) as census:
                reaper.extend(cli("run", "--input", str(busy_input), "--run-dir", str(run_dir), "--wait", "600",
                                  *RUN_ARGS) for _ in range(runs))
                outs = [p.communicate(timeout=WAIT_S * 3) for p in reaper]
        finally:
            kill_workers(run_dir)
        assert [p.returncode for p in reaper] == [0] * runs, [o[1][-2000:] for o in outs]
        assert census.most == 1, f"{census.most} workers of one run directory were alive at once"
        assert len(census.seen) >= 1
        assert_worker_events_never_interleave(run_dir)
        metrics = metrics_for_run(run_dir)
        assert metrics.duplicates == [] and metrics.missing == []
        assert len({e["pid"] for e in read_events(run_dir / "ledger.jsonl") if e["ev"] == "pass_start"}) == runs

    def test_a_run_on_a_busy_directory_waits_then_refuses_touching_nothing(
            self, busy_input: Path, tmp_path: Path) -> None:
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        (run_dir / "spec.json").write_text(json.dumps({"input": str(busy_input.resolve())}), encoding="utf-8")
        (run_dir / "ledger.jsonl").write_text("", encoding="utf-8")
        with RunDirLock(run_dir, role="test").acquire(0):
            before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in run_dir.iterdir()}
            t0 = time.monotonic()
            proc = subprocess.run([sys.executable, "-m", "batchlab", "run", "--input", str(busy_input),
                                   "--run-dir", str(run_dir), "--wait", "0.5"], capture_output=True, text=True,
                                  timeout=WAIT_S)
            waited = time.monotonic() - t0
            after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in run_dir.iterdir()}
        assert proc.returncode == 2, proc.stderr
        error = json.loads(proc.stdout)["error"]
        assert error["code"] == "run_dir_busy"
        assert error["details"]["holder_pid"] == os.getpid() and error["details"]["holder_role"] == "test"
        assert error["details"]["since"] and error["details"]["waited_s"] == 0.5
        assert any("kill" in h for h in error["hints"])
        assert waited >= 0.5
        assert after == before

    def test_a_worker_started_by_hand_on_a_busy_directory_refuses(self, tmp_path: Path) -> None:
        run_dir = tmp_path / "run"
        with RunDirLock(run_dir, role="test").acquire(0):
            proc = subprocess.run([sys.executable, "-m", "batchlab.worker", str(run_dir), "--wait-lock", "0.2"],
                                  capture_output=True, text=True, timeout=WAIT_S)
        assert proc.returncode == 2
        assert json.loads(proc.stdout)["error"]["code"] == "run_dir_busy"
        assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_NAME]  # no ledger, no spec read or written

    def test_the_lock_dies_with_its_holder(self, tmp_path: Path) -> None:
        code = textwrap.dedent(f"""
            import time
            from batchlab.runlock import RunDirLock
            RunDirLock({str(tmp_path / 'run')!r}, role="doomed").acquire(0)
            print("held", flush=True)
            time.sleep(600)
        """)
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
            assert lock_is_held(tmp_path / "run")
            assert read_holder(tmp_path / "run" / LOCK_NAME)["role"] == "doomed"
        finally:
            proc.kill()
            proc.communicate()
        assert not lock_is_held(tmp_path / "run")  # SIGKILL leaves no stale lock
        RunDirLock(tmp_path / "run").acquire(0).release()


def start_and_wait_for_work(busy_input: Path, run_dir: Path, reaper: list[subprocess.Popen[str]],
                            env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], int]:
    proc = cli("run", "--input", str(busy_input), "--run-dir", str(run_dir), *RUN_ARGS, env=env)
    reaper.append(proc)
    wait_for(lambda: ledger_has(run_dir, "sink_put") or proc.poll() is not None, "the worker's first commit")
    assert proc.poll() is None, proc.communicate()
    holder = read_holder(run_dir / LOCK_NAME)
    assert holder["role"] == "worker" and holder["ppid"] == proc.pid
    return proc, int(holder["pid"])


class TestStoppingTheCommandStopsItsBatch:
    @pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
    def test_ctrl_c_or_sigterm_stops_the_worker_and_says_how_to_resume(
            self, signum: int, code: int, busy_input: Path, tmp_path: Path,
            reaper: list[subprocess.Popen[str]]) -> None:
        run_dir = tmp_path / "run"
        try:
            proc, worker = start_and_wait_for_work(busy_input, run_dir, reaper)
            proc.send_signal(signum)
            out, err = proc.communicate(timeout=WAIT_S)
            assert not pid_alive(worker), "the worker outlived its command"
            assert workers_of(run_dir) == []
        finally:
            kill_workers(run_dir)
        assert proc.returncode == code, err[-2000:]
        assert "stopped by" in out and f"resume with: batchlab run --input {busy_input}" in out
        stopped = [e for e in read_events(run_dir / "ledger.jsonl") if e["ev"] == "stopped"]
        assert len(stopped) == 1 and stopped[0]["pid"] == worker
        assert stopped[0]["in_flight"] == 0  # in-flight documents committed within the grace time
        metrics = metrics_for_run(run_dir)
        assert 0 < metrics.completed < metrics.unique  # it stopped taking new documents
        resumed = subprocess.run([sys.executable, "-m", "batchlab", "run", "--input", str(busy_input),
                                  "--run-dir", str(run_dir), *RUN_ARGS], capture_output=True, text=True,
                                 timeout=WAIT_S * 2)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        metrics = metrics_for_run(run_dir)
        assert metrics.missing == [] and metrics.duplicates == []

    @pytest.mark.parametrize("portable", [False, True], ids=["linux-pdeathsig", "portable-pipe"])
    def test_sigkill_of_the_command_kills_its_worker(
            self, portable: bool, busy_input: Path, tmp_path: Path, reaper: list[subprocess.Popen[str]]) -> None:
        run_dir = tmp_path / "run"
        env = {FORCE_PORTABLE_ENV: "1"} if portable else {FORCE_PORTABLE_ENV: "0"}
        try:
            proc, worker = start_and_wait_for_work(busy_input, run_dir, reaper, env=env)
            link = next(e for e in read_events(run_dir / "ledger.jsonl") if e["ev"] == "pass_start")["parent_link"]
            assert link == ("pipe" if portable or not sys.platform.startswith("linux") else "pdeathsig")
            proc.kill()
            proc.communicate(timeout=WAIT_S)
            wait_for(lambda: not pid_alive(worker), "the worker dying with its command")
            wait_for(lambda: not lock_is_held(run_dir), "the run directory's lock being released")
            assert workers_of(run_dir) == []
        finally:
            kill_workers(run_dir)


DASHBOARD_CHILD = textwrap.dedent("""
    import sys, time
    from batchlab.teach.dashboard.model import DashboardModel, DashboardSettings
    model = DashboardModel(runs_dir=sys.argv[1], settings=DashboardSettings(documents=200, latency_ms=30.0,
                           crash="none"))
    model.run()
    model.wait_until(lambda s: s.finished > 0, timeout=180)
    print(model.worker_pid, model.run_dir, flush=True)
    time.sleep(600)
""")

GRADER_CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from batchlab.examples import make_documents, write_input
    from batchlab.paths import solution_module
    from batchlab.runner import RunSpec, run_pass, prepare
    from batchlab.service import LatencyModel
    sys.path.insert(0, sys.argv[2])
    from grader.sandbox import LIMITS
    run = Path(sys.argv[1]) / "run"
    source = write_input(Path(sys.argv[1]) / "input.json", make_documents(200, seed=3, min_bytes=1000,
                                                                         max_bytes=6000))
    spec = RunSpec(impl=solution_module(), input=source, run_dir=run, latency=LatencyModel(median_ms=30.0),
                   limits=LIMITS)
    prepare(spec)
    def show(events):
        if any(e["ev"] == "sink_put" for e in events) and not show.done:
            show.done = True
            print(next(e["pid"] for e in events if e["ev"] == "sink_put"), run, flush=True)
    show.done = False
    run_pass(spec, 1, on_events=show)
""")


class TestOtherParentsOfWorkers:
    @pytest.mark.parametrize("child", [DASHBOARD_CHILD, GRADER_CHILD], ids=["dashboard", "grader-runner"])
    def test_sigkill_of_the_parent_kills_its_worker(self, child: str, tmp_path: Path, repo_root: Path) -> None:
        proc = subprocess.Popen([sys.executable, "-c", child, str(tmp_path), str(repo_root)],
                                stdout=subprocess.PIPE, text=True)
        run_dir: Path | None = None
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().split()
            assert line, "the parent never reported its worker"
            worker, run_dir = int(line[0]), Path(line[1])
            assert pid_alive(worker)
            proc.kill()
            proc.communicate(timeout=WAIT_S)
            wait_for(lambda: not pid_alive(worker), "the worker dying with its parent")
            assert workers_of(run_dir) == []
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
            if run_dir is not None:
                kill_workers(run_dir)
