"""The facts step 01's tests judge: what each probe child is asked to do to the student's ``CheckpointStore``.

Apart from ``grader/test_01_checkpoint.py`` because the two halves change for different reasons: these
tasks are the experiment (the operation scripts a probe replays, the SIGKILL rounds, the hot-spot
measurement and their sizes), the test file is the judgment (points, messages, rules). The tasks are
registered when the test module imports this one; their names (``checkpoint:*``) are what the tests'
``@pytest.mark.task`` markers name.
"""

from __future__ import annotations

import random
import time
from typing import Any

from grader.sandbox import start_probe
from grader.tasks import Context, task

#: The states, short, so the operation scripts below read as tables.
P, DN, DG, F = "processing", "done", "degraded", "failed"


def _ops_probe(ctx: Context, name: str, ops: list[list[Any]]) -> Any:
    work = ctx.workdir(f"checkpoint-{name}")
    return ctx.probe("checkpoint_script", {"state_dir": str(work / "state"), "ops": ops}, workdir=f"checkpoint-{name}")


@task("checkpoint:round_trip")
def round_trip_facts(ctx: Context) -> Any:
    return _ops_probe(ctx, "round_trip", [
        ["open"],
        ["transition", "k1", P, "doc-1", None], ["transition", "k1", DN, None, None],
        ["transition", "k2", P, "doc-2", None], ["transition", "k2", F, None, "timeout"],
        ["transition", "k3", P, "doc-3", None], ["transition", "k3", DG, None, "permanent:parse_error"],
        ["close"],
        ["open"], ["get", "k1"], ["get", "k2"], ["get", "k3"], ["get", "never-seen"], ["entries"], ["close"],
    ])


@task("checkpoint:transitions")
def transition_facts(ctx: Context) -> Any:
    return _ops_probe(ctx, "transitions", [
        ["open"],
        ["transition", "k", P, "doc-k", None],          # 1 pending -> processing
        ["transition", "k", P, None, None],             # 2 processing -> processing (resume after a crash)
        ["transition", "k", DN, None, None],            # 3 processing -> done
        ["transition", "k", P, None, None],             # 4 done -> processing: illegal
        ["transition", "k", F, None, "late"],           # 5 done -> failed: illegal
        ["get", "k"],                                   # 6 still done
        ["transition", "s", DN, "doc-s", None],         # 7 pending -> done: illegal (skips processing)
        ["get", "s"],                                   # 8 not done
        ["transition", "m", P, "doc-m", None],          # 9
        ["transition", "m", DG, None, "permanent"],     # 10 processing -> degraded
        ["transition", "f", P, "doc-f", None],          # 11
        ["transition", "f", F, None, "unexpected"],     # 12 processing -> failed
        ["close"],
    ])


@task("checkpoint:attempts")
def attempts_facts(ctx: Context) -> Any:
    return _ops_probe(ctx, "attempts", [
        ["open"],
        ["transition", "a", P, "doc-a", None], ["transition", "a", P, None, None],
        ["transition", "a", F, None, "timeout"],
        ["transition", "b", P, "doc-b", None], ["transition", "b", DG, None, "permanent:parse_error"],
        ["get", "a"], ["get", "b"], ["close"],
        ["open"], ["get", "a"], ["get", "b"],
        ["transition", "a", P, None, None],  # 12: a retry run after the reopen: attempt number 3
        ["close"],
    ])


@task("checkpoint:namespaces")
def namespace_facts(ctx: Context) -> Any:
    """Four stores in one state_dir: two batch ids, and two shards of a third batch; the same keys in each."""
    work = ctx.workdir("checkpoint-namespaces")
    stores = [["batch-a", None], ["batch-b", None], ["batch-c", "s1"], ["batch-c", "s2"]]
    return ctx.probe("checkpoint_namespaces", {"state_dir": str(work / "state"), "stores": stores},
                     workdir="checkpoint-namespaces")


KILL_KEYS = 300
KILL_ROUNDS = 3


def _acked(log: str) -> dict[str, int]:
    last: dict[str, int] = {}
    for line in log.splitlines():
        parts = line.split("\t")
        if len(parts) == 2 and parts[1].isdigit():
            last[parts[0]] = int(parts[1])
    return last


@task("checkpoint:kill", cost=3.0)
def kill_facts(ctx: Context) -> dict[str, Any]:
    """Hammer ``transition`` in a child, SIGKILL it at a seeded random moment, reopen; three rounds."""
    work = ctx.workdir("checkpoint-kill")
    state_dir, log = work / "state", work / "acked.log"
    rng = random.Random(ctx.seed)
    rounds = []
    for round_no in range(1, KILL_ROUNDS + 1):
        before = len(log.read_text().splitlines()) if log.exists() else 0
        hammer = start_probe(ctx.impl, "checkpoint_hammer",
                             {"state_dir": str(state_dir), "keys": KILL_KEYS, "log": str(log)}, workdir=work)
        deadline = time.monotonic() + ctx.timeout(30)
        progressed = False
        while time.monotonic() < deadline and hammer.proc.poll() is None:
            lines = len(log.read_text().splitlines()) if log.exists() else 0
            if lines - before >= KILL_KEYS + 20:
                progressed = True
                break
            time.sleep(0.01)
        if not progressed:
            verdict = hammer.finish(0.5)
            return {"round": round_no, "problem": "hammer", "verdict": verdict}
        delay = rng.uniform(0.0, 0.03)
        time.sleep(delay)
        hammer.kill()
        acked = _acked(log.read_text())
        dump = ctx.probe("checkpoint_dump", {"state_dir": str(state_dir)}, workdir="checkpoint-kill")
        rounds.append({"round": round_no, "delay_s": delay, "acked": len(acked)})
        if not dump.ok:
            return {"round": round_no, "problem": "reopen", "verdict": dump, "rounds": rounds}
        entries = dump.data["entries"]
        lost, torn = [], []
        for key, attempts in sorted(acked.items()):
            got = entries.get(key)
            if got is None or got.get("attempts") is None or got["attempts"] < attempts:
                lost.append(f"{key} (acknowledged attempts {attempts}, store says "
                            f"{None if got is None else got.get('attempts')})")
            elif got["attempts"] > attempts + 1 or got.get("state") != "processing":
                torn.append(f"{key} ({got})")
        if lost or torn:
            return {"round": round_no, "problem": "inconsistent", "lost": lost, "torn": torn, "rounds": rounds,
                    "acked": len(acked)}
    return {"problem": None, "rounds": rounds}


#: The hot-spot check: one transition with 100 entries against one with up to 20 000 (docs/design.md, Traps).
COST_SMALL = 100
COST_LEVELS = [1_000, 5_000, 20_000]
#: A good store costs about the same at every size (measured on a loaded 2-core machine: SQLite 0.9-1.1x in
#: time and exactly 1x in bytes, an append-only log 1.0x); a whole-file rewrite costs in proportion to the
#: size: 3x at 300 entries, 200x at 20 000.
COST_TIME_LIMIT = 5.0
#: Bytes written per transition (``wchar``) do not depend on the machine's load, so their limit can be tighter.
COST_BYTES_LIMIT = 3.0
COST_SAMPLES = 101
#: Seconds of filling the big store at most: a slower store is measured at the size it reached.
COST_FILL_BUDGET_S = 10.0


@task("checkpoint:cost", cost=4.0)
def cost_facts(ctx: Context) -> Any:
    work = ctx.workdir("checkpoint-cost")
    return ctx.probe("checkpoint_cost", {"work": str(work), "small": COST_SMALL, "levels": COST_LEVELS,
                                         "samples": COST_SAMPLES, "time_ratio": COST_TIME_LIMIT,
                                         "bytes_ratio": COST_BYTES_LIMIT, "measure_s": 3.0,
                                         "budget_s": ctx.timeout(COST_FILL_BUDGET_S)},
                     workdir="checkpoint-cost", timeout_s=COST_FILL_BUDGET_S + 50)
