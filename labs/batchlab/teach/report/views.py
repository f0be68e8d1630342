"""What the ledger says about a run beyond :mod:`batchlab.metrics`: retry delays, kills, a log excerpt.

Pure functions over ledger events and the run's spec, apart from the Markdown and the files, so that
they are tested on their own and read like the metrics they sit beside.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...batchstream import open_batch
from ...contract import percentile
from ...inventory import iter_entries
from ...ledger import CRASH_EVENTS, Ev

LOG_LINES = 40

@dataclass(frozen=True)
class RetryDelay:
    """The wait between a failed service call and the retry of the same chunk, in one pass."""

    pass_no: int
    doc_id: str
    chunk: int
    attempt: int  # the attempt that failed (1 = the first call)
    delay_s: float

def retry_delays(events: Sequence[Mapping[str, Any]]) -> list[RetryDelay]:
    """Time from each ``call_fail`` to the next ``call_start`` of the same identity and chunk, same pass.

    A failure followed by no retry (retries exhausted, degraded, or the pass was
    killed) gives no delay; neither does a retry in a later pass (that wait is the
    outage, not the backoff).
    """
    pending: dict[tuple[int, str, int], Mapping[str, Any]] = {}
    result: list[RetryDelay] = []
    for ev in events:
        kind = ev.get("ev")
        if kind not in (Ev.CALL_FAIL, Ev.CALL_START):
            continue
        key = (int(ev.get("pass", 0)), str(ev.get("ident")), int(ev.get("chunk", 0)))
        if kind == "call_fail":
            pending[key] = ev
        elif key in pending:
            fail = pending.pop(key)
            result.append(RetryDelay(pass_no=key[0], doc_id=str(ev.get("doc_id")), chunk=key[2],
                                     attempt=int(fail.get("attempt", 1)),
                                     delay_s=max(float(ev["t"]) - float(fail["t"]), 0.0)))
    return result

def expected_backoff(config: Mapping[str, Any], attempts: Sequence[int]) -> list[tuple[int, float, float]]:
    """The configured wait after failed attempt ``a``: ``min(max_delay, base * 2**(a-1)) + [0, jitter]``."""
    base = float(config.get("base_delay", 0.0))
    cap = float(config.get("max_delay", 0.0))
    jitter = float(config.get("jitter", 0.0))
    return [(a, min(cap, base * 2 ** (a - 1)), min(cap, base * 2 ** (a - 1)) + jitter) for a in attempts]

def interruptions(events: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The first crash or kill event of each pass (a worker's own crash and the parent's kill may both appear)."""
    seen: set[int] = set()
    result = []
    for ev in events:
        if ev.get("ev") in CRASH_EVENTS and int(ev.get("pass", 0)) not in seen:
            seen.add(int(ev.get("pass", 0)))
            result.append(ev)
    return result

def log_excerpt(events: Sequence[Mapping[str, Any]], origin: float, *, limit: int = LOG_LINES) -> list[str]:
    """The ledger lines that tell the story: pass starts and ends, first faults, commits, degradations, the kill."""
    always = {Ev.PASS_START, Ev.PASS_END, Ev.CRASH, Ev.KILL, Ev.TIMEOUT, Ev.STUDENT_ERROR, Ev.INPUT_ERROR}
    per_pass: dict[tuple[int, str], int] = defaultdict(int)
    quota = {"call_fail": 3, "sink_put": 2, "degraded": 3, "failed": 3}
    chosen: list[Mapping[str, Any]] = []
    for ev in events:
        kind = str(ev.get("ev"))
        if kind == "state" and ev.get("state") in ("degraded", "failed"):
            kind = str(ev.get("state"))
        elif kind == Ev.CALL_START and int(ev.get("attempt", 1)) > 1:
            kind = "retry"
            quota.setdefault("retry", 2)
        if kind in always:
            chosen.append(ev)
        elif kind in quota:
            slot = (int(ev.get("pass", 0)), kind)
            if per_pass[slot] < quota[kind]:
                per_pass[slot] += 1
                chosen.append(ev)
    if len(chosen) > limit:  # keep the story's ends: the starts, kills and ends are never cut
        keep = [e for e in chosen if e.get("ev") in always]
        rest = [e for e in chosen if e.get("ev") not in always][: max(limit - len(keep), 0)]
        ids = {id(e) for e in keep + rest}
        chosen = [e for e in chosen if id(e) in ids]
    return [_log_line(ev, origin) for ev in chosen]

def _log_line(ev: Mapping[str, Any], origin: float) -> str:
    kind = str(ev.get("ev"))
    t = float(ev.get("t", origin)) - origin
    head = f"+{t:8.3f}s  pass {ev.get('pass', '?')}  {kind:<11}"
    if kind in (Ev.CALL_FAIL, Ev.CALL_START):
        what = f"{ev.get('doc_id')} chunk {ev.get('chunk')} attempt {ev.get('attempt')}"
        if kind == "call_fail":
            what += f": {ev.get('error')}" + (" (permanent)" if ev.get("permanent") else "")
        return f"{head} {what}"
    if kind == Ev.SINK_PUT:
        return f"{head} {ev.get('doc_id')} mode={ev.get('mode')} chunks={ev.get('n')}"
    if kind == "state":
        err = f" last_error={ev.get('error')}" if ev.get("error") else ""
        return f"{head} {ev.get('doc_id')} -> {ev.get('state')}{err}"
    if kind == "pass_start":
        return f"{head} crash plan={ev.get('crash')} at={ev.get('at')}"
    if kind == "pass_end":
        rep = ev.get("report") or {}
        return (f"{head} executed={rep.get('executed', '?')} skipped={rep.get('skipped', '?')} "
                f"retries={rep.get('retries', '?')} calls={ev.get('calls', '?')}")
    if kind in CRASH_EVENTS:
        return f"{head} {ev.get('kind')} at={ev.get('at', ev.get('delay', ''))} {ev.get('doc_id', '')}".rstrip()
    if kind == Ev.TIMEOUT:
        return f"{head} after {ev.get('after_s')} s"
    return f"{head} {str(ev.get('error', ''))[:160]}"

def rejected_codes(spec: Mapping[str, Any]) -> set[str]:
    """The classified reasons of the input's invalid documents (400-like), as opposed to service faults.

    The input is streamed (validated first), one entry in memory at a time: a set of codes is all it keeps.
    """
    return {e.error.code for e in iter_entries(open_batch(spec["input"])) if e.error is not None}

def _delay_stats(delays: Sequence[RetryDelay], expected: Sequence[tuple[int, float, float]]) -> dict[str, Any]:
    by_attempt: dict[int, list[float]] = defaultdict(list)
    for d in delays:
        by_attempt[d.attempt].append(d.delay_s)
    bands = {a: (lo, hi) for a, lo, hi in expected}
    return {
        "count": len(delays),
        "p50_s": percentile([d.delay_s for d in delays], 50),
        "p95_s": percentile([d.delay_s for d in delays], 95),
        "by_attempt": {
            str(a): {"count": len(v), "min_s": min(v), "p50_s": percentile(v, 50), "max_s": max(v),
                     "expected_min_s": bands.get(a, (None, None))[0], "expected_max_s": bands.get(a, (None, None))[1]}
            for a, v in sorted(by_attempt.items())
        },
    }
