"""The grader's bubblewrap sandbox: detection, what a child sees and writes, kills through it, and the options."""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from batchlab.examples import write_input
from batchlab.host import child_popen_kwargs, kill_group
from batchlab.ledger import read_events
from batchlab.runner import Limits, RunSpec, prepare, run_pass
from batchlab.service import LatencyModel
from batchlab.worker import WorkerExit

from grader import bubblewrap
from grader.bubblewrap import Sandbox, detect, git_dirs, submission_folder
from grader.sandbox import GRADER_DIR, probe_files, run_probe, use_sandbox
from grader.scenario_running import worker_wrap

#: Who runs it matters here: bubblewrap needs user namespaces unless root, the limits bind only a non-root user.
pytestmark = pytest.mark.student_env

BWRAP = detect().active
needs_bwrap = pytest.mark.skipif(not BWRAP, reason=f"bubblewrap does not run here: {detect().reason}")
ROOT = GRADER_DIR.parent


def _sandbox(*hidden: Path) -> Sandbox:
    return detect().hiding(hidden=[GRADER_DIR, *hidden], shown=probe_files())


def _impl(folder: Path, source: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "document_processor.py"
    path.write_text(source, encoding="utf-8")
    return path


def test_turning_it_off_is_said_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    """BATCHLAB_SANDBOX=off gives no sandbox, a reason naming the switch, commands left as they are, and the
    weaker guarantee on the run's records stated."""
    monkeypatch.setenv(bubblewrap.SANDBOX_ENV, "off")
    box = bubblewrap.detect.__wrapped__()
    assert box.kind == "none" and "BATCHLAB_SANDBOX=off" in box.reason
    assert box.command(["python", "x.py"], writable=[Path("/tmp")]) == ["python", "x.py"]
    assert box.info() == {"kind": "none", "reason": box.reason, "records": box.records()}
    assert "detected" in box.records() and "not prevented" in box.records()
    assert "NONE" in box.banner()


def test_a_missing_bwrap_is_said_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where bwrap is not on PATH, the reason names the package to install."""
    monkeypatch.delenv(bubblewrap.SANDBOX_ENV, raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    box = bubblewrap.detect.__wrapped__()
    assert box.kind == "none" and "apt-get install bubblewrap" in box.reason


def test_a_worktree_hides_the_shared_git_folder(tmp_path: Path) -> None:
    """A worktree's .git file points to the shared repository: that folder (the whole history) is what is hidden."""
    (tmp_path / "main" / ".git" / "worktrees" / "wt").mkdir(parents=True)
    (tmp_path / "wt").mkdir()
    (tmp_path / "wt" / ".git").write_text(f"gitdir: {tmp_path}/main/.git/worktrees/wt\n", encoding="utf-8")
    assert git_dirs(tmp_path / "wt") == [(tmp_path / "main" / ".git").resolve()]
    assert git_dirs(tmp_path / "main") == [tmp_path / "main" / ".git"]


def test_the_submission_folder_is_hidden_unless_a_child_needs_what_it_holds(tmp_path: Path) -> None:
    """Other submissions beside the graded one are hidden; a folder holding the kit or the venv is not."""
    assert submission_folder(tmp_path / "subs" / "alice" / "document_processor.py", keep=[]) == \
        (tmp_path / "subs" / "alice").resolve()
    assert submission_folder(ROOT / "document_processor.py", keep=[ROOT]) is None
    assert submission_folder(Path("/document_processor.py"), keep=[]) is None


@needs_bwrap
def test_a_probe_child_sees_and_writes_only_its_own_work_folder(tmp_path: Path) -> None:
    """In the sandbox the kit is read-only, grader/ shows only the probe, other folders and /tmp are private."""
    secret = tmp_path / "results"
    (secret / "earlier").mkdir(parents=True)
    (secret / "earlier" / "results.json").write_text("{}", encoding="utf-8")
    source = f"""
import os, socket
facts = {{"grader": sorted(os.listdir({str(GRADER_DIR)!r})), "secret": os.path.exists({str(secret)!r} + "/earlier"),
          "pid": os.getpid(), "tmp": sorted(os.listdir("/tmp"))}}
for name, path in [("kit", {str(ROOT / "pyproject.toml")!r}), ("own", "mine.txt")]:
    try:
        open(path, "a").close()
        facts[name] = "written"
    except OSError as exc:
        facts[name] = exc.errno
try:
    socket.create_connection(("192.0.2.1", 80), timeout=1)
    facts["net"] = "connected"
except OSError as exc:
    facts["net"] = exc.errno
facts["run"] = os.listdir("/run")
raise RuntimeError(repr(facts))
"""
    impl = _impl(tmp_path / "sub", source)
    verdict = run_probe(impl, "import", {}, workdir=secret / "work" / "w", timeout_s=30)
    facts = ast.literal_eval(verdict.error["message"])
    assert facts["grader"] == [p.name for p in probe_files()]
    assert facts["kit"] == 30 and facts["own"] == "written"  # EROFS on the kit; the work folder is writable
    shown = (tmp_path, impl, *bubblewrap._runtime_under_tmp())  # mount points the sandbox made in its own /tmp
    assert facts["secret"] is False and facts["tmp"] == sorted({p.parts[2] for p in shown})
    assert facts["pid"] <= 3 and facts["net"] != "connected" and facts["run"] == []
    assert (secret / "work" / "w" / "mine.txt").exists()


@needs_bwrap
def test_results_and_hidden_folders_are_invisible_to_a_child(tmp_path: Path) -> None:
    """A folder the session hides (the results) is an empty read-only folder inside, even around the work folder."""
    results = tmp_path / "results"
    (results / "other").mkdir(parents=True)
    (results / "other" / "results.json").write_text('{"score": 1}', encoding="utf-8")
    work = results / "work" / "me"
    work.mkdir(parents=True)
    box = _sandbox(results)
    script = (f"import os; print(sorted(os.listdir({str(results)!r})), os.path.exists({str(results)!r} + '/other'));"
              f"open({str(results)!r} + '/forged.json', 'w')")
    proc = subprocess.run(box.command([sys.executable, "-c", script], writable=[work]), capture_output=True,
                          text=True, timeout=60)
    assert proc.stdout.strip() == "['work'] False"
    assert "Read-only file system" in proc.stderr
    assert not (results / "forged.json").exists()


@needs_bwrap
def test_a_signal_death_inside_reads_as_the_same_signal_outside(tmp_path: Path) -> None:
    """bwrap reports a child killed by signal N as 128+N; the grader sees -N, as without the sandbox."""
    box = _sandbox()
    cmd = box.command([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"],
                      writable=[tmp_path])
    assert subprocess.run(cmd, timeout=60).returncode == -signal.SIGKILL
    assert subprocess.run(box.command([sys.executable, "-c", "raise SystemExit(7)"], writable=[tmp_path]),
                          timeout=60).returncode == 7


@needs_bwrap
def test_a_group_kill_ends_every_process_of_the_sandbox_even_a_new_session(tmp_path: Path) -> None:
    """The grader's SIGKILL of the child's group takes a setsid double-forked grandchild with it (PID namespace)."""
    box = _sandbox()
    code = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
            "        open('grandchild', 'w').close(); time.sleep(300)\n    os._exit(0)\ntime.sleep(300)\n")
    env = {**os.environ, "BATCHLAB_SANDBOX_TEST": str(tmp_path)}
    proc = subprocess.Popen(box.command([sys.executable, "-c", code], writable=[tmp_path]), env=env,
                            **child_popen_kwargs(Limits(cpu_s=60)))
    deadline = time.monotonic() + 30
    while not (tmp_path / "grandchild").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (tmp_path / "grandchild").exists()
    kill_group(proc)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while _with_marker(str(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _with_marker(str(tmp_path)) == []


def _with_marker(value: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and f"BATCHLAB_SANDBOX_TEST={value}".encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_the_process_count_limit_is_set_in_the_child() -> None:
    """Limits(processes=N) reaches the child as RLIMIT_NPROC (it binds an unprivileged grader's user)."""
    code = "import resource; print(resource.getrlimit(resource.RLIMIT_NPROC))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         **child_popen_kwargs(Limits(processes=333))).stdout
    assert out.strip() == "(333, 333)"


def test_the_sweep_ends_a_detached_grandchild_that_came_back_to_us() -> None:
    """As a subreaper, a process that double-forks into a new session gets its orphan back and the sweep ends it."""
    marker = f"sweep-test-{os.getpid()}-{time.monotonic_ns()}"
    script = "\n".join([
        f"# {marker}", "import os, sys, time", f"sys.path.insert(0, {str(ROOT)!r})",
        "from grader.reaper import adopt_orphans, sweep_children", "assert adopt_orphans()",
        "if os.fork() == 0:", "    os.setsid()", "    if os.fork() == 0:", "        time.sleep(300)", "    os._exit(0)",
        "os.wait()", "time.sleep(0.5)", "print(sweep_children(), sweep_children())"])
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["1", "0"], out.stderr
    # No process of that script is left (the test process's own other children are not this test's to sweep).
    assert not [p.pid for p in psutil.process_iter(["cmdline", "status"])
                if p.info["status"] != psutil.STATUS_ZOMBIE and marker in " ".join(p.info["cmdline"] or [])]


@needs_bwrap
def test_a_process_that_adopts_no_orphans_leaves_its_zombie_children_to_their_popen() -> None:
    """Outside a subreaper (the suite's own process, running grader runs beside in-process probes) the zombie sweep
    reaps nothing, so a finished child's exit status still reaches the ``Popen`` that waits for it."""
    from grader.reaper import is_subreaper, reap_adopted

    assert not is_subreaper()
    child = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    for _ in range(600):  # until it is a zombie, at most 60 s
        if psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE:
            break
        time.sleep(0.1)
    reap_adopted(sandboxed=True)
    assert child.wait(timeout=60) == 3


def test_require_sandbox_without_one_is_the_unified_error_with_results(tmp_path: Path) -> None:
    """--require-sandbox where there is none: exit 2, the unified error, and a results.json that says why."""
    env = {**os.environ, bubblewrap.SANDBOX_ENV: "off"}
    results = tmp_path / "out" / "results.json"
    proc = subprocess.run([sys.executable, "-m", "pytest", str(GRADER_DIR), "--impl",
                           str(ROOT / "labs" / "solution" / "lab03" / "src" / "services" / "document_processor.py"),
                           "--results", str(results), "--require-sandbox", "-q", "-p", "no:cacheprovider",
                           "-p", "no:nbval"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert '"code": "sandbox_unavailable"' in proc.stdout + proc.stderr
    data = json.loads(results.read_text(encoding="utf-8"))
    assert data["score"] == 0 and data["extra_data"]["sandbox"]["kind"] == "none"
    assert any("sandbox_unavailable" in e for e in data["extra_data"]["grader_errors"])


@pytest.mark.parametrize("sandbox", ["on", "off"])
def test_a_probe_started_from_a_task_thread_dies_with_a_killed_grader(sandbox: str, tmp_path: Path) -> None:
    """A grader killed from outside (a class-grading timeout) takes a hanging probe with it, with or without
    bubblewrap, though the probe was started from a helper thread (the task pool's, alive while it waits)."""
    impl = _impl(tmp_path / "sub", "import time\nopen('started', 'w').close()\ntime.sleep(600)\n")
    script = "\n".join([
        "import sys, threading, time", f"sys.path.insert(0, {str(ROOT)!r})", "from pathlib import Path",
        "from grader.sandbox import run_probe",
        f"t = threading.Thread(target=run_probe, args=(Path({str(impl)!r}), 'import', {{}}),",
        f"                     kwargs={{'workdir': Path({str(tmp_path / 'w')!r}), 'timeout_s': 600}})",
        "t.start(); t.join()"])
    env = {**os.environ, "BATCHLAB_SANDBOX_TEST": str(tmp_path), bubblewrap.SANDBOX_ENV: sandbox}
    grader = subprocess.Popen([sys.executable, "-c", script], env=env)
    deadline = time.monotonic() + 60
    while not (tmp_path / "w" / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (tmp_path / "w" / "started").exists()
    grader.kill()
    grader.wait()
    deadline = time.monotonic() + 10
    while _with_marker(str(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = _with_marker(str(tmp_path))
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == []


@needs_bwrap
@pytest.mark.skipif(os.geteuid() == 0, reason="the kernel exempts root from RLIMIT_NPROC (.ci/run runs this test "
                                               "as an unprivileged user)")
def test_a_fork_storm_in_the_sandbox_stops_at_the_process_count_limit(tmp_path: Path) -> None:
    """For an unprivileged grader, the process-count limit holds inside the sandbox: forks fail with EAGAIN."""
    mine = sum(1 for p in Path("/proc").glob("[0-9]*/task/*") if _owner(p) == os.getuid())
    storm = ("import os, time\nn = 0\nfor _ in range(400):\n    try:\n        pid = os.fork()\n"
             "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(60)\n        os._exit(0)\n"
             "    n += 1\nprint(n)\n")
    proc = subprocess.run(_sandbox().command([sys.executable, "-c", storm], writable=[tmp_path]), capture_output=True,
                          text=True, timeout=120, **child_popen_kwargs(Limits(processes=mine + 40)))
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) < 400


def _owner(path: Path) -> int:
    try:
        return path.stat().st_uid
    except OSError:
        return -1


def test_a_sandbox_that_cannot_start_is_a_grader_error_not_the_students(tmp_path: Path) -> None:
    """When bwrap refuses to set a child up, the verdict is a grader error with bwrap's message."""
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: Can not mount tmpfs on /x: No space' >&2\nexit 1\n", encoding="utf-8")
    fake.chmod(0o755)
    use_sandbox(Sandbox("bubblewrap", "a fake bwrap that always refuses", bwrap=str(fake)))
    try:
        verdict = run_probe(_impl(tmp_path / "sub", "X = 1\n"), "import", {}, workdir=tmp_path / "w", timeout_s=30)
    finally:
        use_sandbox(None)
    assert verdict.is_grader_error and "Can not mount tmpfs" in verdict.failure("the module")
    assert "GRADER ERROR (not your fault)" in verdict.failure("the module")


def test_the_session_hides_the_grader_results_reference_history_and_neighbours(tmp_path: Path) -> None:
    """The session's sandbox hides grader/, the results, labs/solution, the git folder, the submission's folder and
    every --sandbox-hide folder, and shows the probe's files and the submission again."""
    from grader.guard import session_sandbox

    impl = _impl(tmp_path / "subs" / "alice", "X = 1\n")
    box = session_sandbox(impl, tmp_path / "out", extra_hidden=[tmp_path / "gradebook"])
    hidden = set(box.hidden)
    assert {GRADER_DIR, (tmp_path / "out").resolve(), (tmp_path / "subs" / "alice").resolve(),
            (tmp_path / "gradebook").resolve(), (ROOT / "labs" / "solution").resolve()} <= hidden
    assert set(git_dirs(ROOT)) <= hidden
    assert impl.resolve() in box.shown and set(probe_files()) <= set(box.shown)


@needs_bwrap
def test_a_killed_probe_writes_nothing_after_the_kill_returns(tmp_path: Path) -> None:
    """ProbeProcess.kill() returns only once the student's code has stopped: a probe writing in a loop leaves its
    file exactly as the grader finds it after the kill (the checkpoint-kill test reads the state right then)."""
    from grader.sandbox import start_probe

    impl = _impl(tmp_path / "sub", "import os\nfd = os.open('beat', os.O_WRONLY | os.O_CREAT | os.O_APPEND)\n"
                                   "while True:\n    os.write(fd, b'x' * 64)\n")
    for _ in range(5):
        work = tmp_path / f"w{_}"
        probe = start_probe(impl, "import", {}, workdir=work)
        deadline = time.monotonic() + 30
        while (not (work / "beat").exists() or (work / "beat").stat().st_size < 64_000) and time.monotonic() < deadline:
            time.sleep(0.01)
        probe.kill()
        size = (work / "beat").stat().st_size
        time.sleep(0.3)
        assert (work / "beat").stat().st_size == size


LOOKS_AROUND = '''
import json
from pathlib import Path
from batchlab.contract import BatchReport
from batchlab.documents import ident_of, parse_document
from batchlab.pipeline import chunk_text, clean_text


async def process_documents_batch(documents, *, batch_id, service, sink, state_dir, config, progress=None, **kw):
    run = Path(state_dir).parent
    seen = sorted(p.name for p in run.iterdir())
    writable = []
    for name in ("ledger.jsonl", "sink.sqlite", "forged.txt"):
        try:
            with open(run / name, "a") as fh:
                fh.write("forged")
            writable.append(name)
        except OSError:
            pass
    (Path(state_dir) / "seen.json").write_text(json.dumps({"seen": seen, "writable": writable}))
    for raw in documents:
        doc = parse_document(raw)
        chunks = chunk_text(clean_text(doc.content))
        vectors = [await service.embed(doc, i, text) for i, text in enumerate(chunks)]
        sink.put(ident_of(doc), doc, chunks, vectors)
    return BatchReport(batch_id=batch_id)
'''


def _boundary_spec(tmp_path: Path, impl: Path, *, docs: int = 3, median_ms: float = 1.0) -> RunSpec:
    """A run behind the boundary whose worker starts in bubblewrap as the grader's scenarios do."""
    run_dir = (tmp_path / "results" / "runs" / "run").resolve()
    source = write_input(tmp_path / "input.json", [{"id": f"doc-{i}", "content": f"Sentence {i}. Another."}
                                                   for i in range(docs)])
    box = _sandbox(tmp_path / "results")
    return RunSpec(impl=impl, input=source, run_dir=run_dir, boundary=True, timeout_s=60,
                   latency=LatencyModel(median_ms=median_ms),
                   wrap=lambda cmd: worker_wrap(box, run_dir, [impl.resolve(), source.resolve()], cmd))


@needs_bwrap
def test_a_sandboxed_worker_sees_neither_the_ledger_nor_the_sink(tmp_path: Path) -> None:
    """Behind the boundary, the worker's view of its run directory is its spec, its lock and its state folder; it
    can write none of the harness's files, and its calls and commits are recorded all the same."""
    spec = _boundary_spec(tmp_path, _impl(tmp_path / "sub", LOOKS_AROUND))
    prepare(spec, fresh=True)
    result = run_pass(spec, 1)
    assert result.returncode == 0 and result.foreign == [], result.stderr[-2000:]
    seen = json.loads((spec.run_dir / "state" / "seen.json").read_text())
    assert seen == {"seen": ["spec.json", "state", "worker.lock"], "writable": []}
    events = read_events(spec.run_dir / "ledger.jsonl")
    assert sum(e["ev"] == "sink_put" for e in events) == 3 and not any(e.get("unbacked") for e in events)
    assert not (spec.run_dir / "forged.txt").exists()


@needs_bwrap
def test_a_stop_request_reaches_a_worker_inside_bubblewrap(tmp_path: Path, reference_impl: Path) -> None:
    """bubblewrap does not forward SIGTERM; behind the boundary the stop goes over the socket: exit 5, ``stopped``."""
    spec = _boundary_spec(tmp_path, reference_impl, docs=200, median_ms=30.0)
    prepare(spec, fresh=True)
    seen: list[dict[str, object]] = []
    result = run_pass(spec, 1, on_events=seen.extend,
                      stop=lambda: "SIGTERM" if any(e["ev"] == "sink_put" for e in seen) else None)
    assert result.returncode == WorkerExit.STOPPED, (result.returncode, result.stderr[-2000:])
    assert any(e["ev"] == "stopped" for e in seen)
