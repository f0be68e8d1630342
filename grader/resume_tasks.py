"""The facts step 05's tests judge: the small two-pass runs (with their SIGKILLs) behind each resume test.

Apart from ``grader/test_05_resume.py`` for the same reason as ``checkpoint_tasks``: the runs (their
configs, seeds, documents and kill points) are the experiment, the test file the judgment. The one
measure that is not a run, :func:`documents_started_not_committed` (the lesson's document-level
concurrency read off a ledger), lives here beside the run whose ledger it reads.
The tasks are registered when the test module imports this one.
"""

from __future__ import annotations

from typing import Any

from batchlab.rundir import RunDir

from grader.minirun import MiniRun, mini_run, short_docs
from grader.tasks import Context, task

CONFIG = {"concurrency": 2, "max_attempts": 4, "base_delay": 0.001, "max_delay": 0.01, "jitter": 0.001}
LATENCY = {"median_ms": 2.0, "sigma": 0.3}
KILL_AT = 6


def documents_started_not_committed(events: list[dict[str, Any]]) -> tuple[int, dict[str, Any] | None]:
    """The most documents started and not yet finished at once, within one pass (and the call that reached it).

    A document counts from its first service call of the pass to its commit (``sink_put``),
    or, if it is never committed in that pass, to its terminal state reported through
    ``progress`` or else its last call: the lesson's document-level concurrency, from
    ``processing`` to commit. A semaphore around each *call* keeps few calls in flight
    but lets every document of the batch start at once; this count sees that.
    """
    end: dict[tuple[int, str], int] = {}
    names: dict[tuple[int, str], str] = {}
    for n, e in enumerate(events):
        if e["ev"] in ("call_start", "call_ok", "call_fail", "sink_put") and "ident" in e:
            doc = (int(e["pass"]), e["ident"])
            names[doc] = str(e.get("doc_id", "")).strip().casefold()
            if e["ev"] == "sink_put" or doc not in end or events[end[doc]]["ev"] != "sink_put":
                end[doc] = n
    by_name = {v: k for k, v in names.items()}
    for n, e in enumerate(events):  # a document never committed ends at its terminal progress report
        if e["ev"] == "state" and e.get("state") in ("failed", "degraded", "done"):
            named = by_name.get(str(e.get("doc_id", "")).strip().casefold())
            if named is not None and named[0] == int(e["pass"]) and events[end[named]]["ev"] != "sink_put":
                end[named] = max(end[named], n)
    started: set[tuple[int, str]] = set()
    open_now: set[tuple[int, str]] = set()
    peak, where = 0, None
    for n, e in enumerate(events):
        if e["ev"] == "call_start":
            doc = (int(e["pass"]), e["ident"])
            if doc not in started:
                started.add(doc)
                open_now.add(doc)
                if len(open_now) > peak:
                    peak, where = len(open_now), e
        for doc in [d for d in open_now if end.get(d) == n]:
            open_now.discard(doc)
    return peak, where


@task("resume:idle")
def idle_facts(ctx: Context) -> MiniRun:
    common = {"config": CONFIG, "latency": LATENCY, "plan": {"seed": 8}}
    return mini_run(ctx, "resume-idle", short_docs("idle", 12, sentences=2), [common, common])


@task("resume:before_sink")
def before_sink_facts(ctx: Context) -> MiniRun:
    common = {"config": CONFIG, "latency": LATENCY, "plan": {"seed": 9}}
    return mini_run(ctx, "resume-before-sink", short_docs("pre", 16, sentences=2),
                    [{**common, "kill_before_put_at": KILL_AT}, common])


@task("resume:after_commit")
def after_commit_facts(ctx: Context) -> MiniRun:
    common = {"config": CONFIG, "latency": LATENCY, "plan": {"seed": 10}}
    return mini_run(ctx, "resume-after-commit", short_docs("post", 16, sentences=2),
                    [{**common, "crash": {"kind": "after_commit", "at": KILL_AT}}, common])


STATES_CONFIG = {**CONFIG, "concurrency": 4}
STATES_PERMANENT = ["st-2", "st-9"]


def states_documents() -> list[dict[str, Any]]:
    return short_docs("st", 14, sentences=2)


@task("resume:states")
def states_facts(ctx: Context) -> tuple[MiniRun, Any]:
    """A two-pass run (killed right after commit #6) with two permanently failing documents, then the checkpoint."""
    common = {"config": STATES_CONFIG, "latency": LATENCY,
              "plan": {"seed": 14, "transient_rate": 0.05, "permanent_ids": STATES_PERMANENT}}
    run = mini_run(ctx, "resume-states", states_documents(),
                   [{**common, "crash": {"kind": "after_commit", "at": KILL_AT}}, common])
    dump = ctx.probe("checkpoint_dump", {"state_dir": str(RunDir(run.run_dir).state), "batch_id": "batch-resume-states"},
                     workdir="mini-resume-states")
    return run, dump


POISON_DOCS = 12


@task("resume:poison")
def poison_facts(ctx: Context) -> MiniRun:
    docs = short_docs("px", POISON_DOCS, sentences=2)
    common = {"config": CONFIG, "latency": LATENCY, "plan": {"seed": 15, "poison_ids": ["px-3"]}}
    return mini_run(ctx, "resume-poison", docs, [common])


@task("resume:shards")
def shards_facts(ctx: Context) -> MiniRun:
    """Shard 0/2, then shard 1/2 of one batch (one sink, one state_dir), then the batch without a shard."""
    common = {"latency": LATENCY, "plan": {"seed": 12}}
    return mini_run(ctx, "resume-shards", short_docs("sh", 16, sentences=2),
                    [{**common, "config": {**CONFIG, "shard": "0/2"}}, {**common, "config": {**CONFIG, "shard": "1/2"}},
                     {**common, "config": CONFIG}])
