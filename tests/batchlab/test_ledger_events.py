"""Every ledger event a real run writes has a kind and fields of ``batchlab.ledger.FIELDS``, the docstring's table."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
from batchlab import ledger
from batchlab.contract import BatchConfig
from batchlab.examples import EN_SENTENCES, make_documents, write_input
from batchlab.faults import CrashPlan, FaultPlan
from batchlab.ledger import ENVELOPE, FIELDS, RESOURCE_EVENT, Ev, PassEnd, append_event, read_events
from batchlab.ledger_views import events_by_pass, pass_end
from batchlab.paths import solution_module
from batchlab.resources import sample
from batchlab.runner import PassResult, RunSpec, prepare, run_pass, run_passes
from batchlab.service import LatencyModel

pytestmark = pytest.mark.slow

#: About 100 chunks, every call slow: in flight for seconds, so the random kill and the stop land mid-pass.
LONG_TAIL = {"id": "long-tail", "source": "handbook",
             "content": " ".join(f"{EN_SENTENCES[i % len(EN_SENTENCES)]} ({i})" for i in range(440))}


def spec_for(impl: Path, source: Path, run_dir: Path, plan: FaultPlan | None = None) -> RunSpec:
    return RunSpec(impl=impl, input=source, run_dir=run_dir, latency=LatencyModel(median_ms=1.0),
                   plan=plan or FaultPlan(seed=5), config=BatchConfig(concurrency=8), timeout_s=120)


@dataclass
class Run:
    """The ledger of a run and how each of its passes ended, by the runner's account."""

    events: list[dict[str, Any]] = field(default_factory=list)
    results: list[PassResult] = field(default_factory=list)

    def ends_by_ledger_and_by_exit(self) -> list[tuple[PassEnd, PassEnd]]:
        by_pass = events_by_pass(self.events)
        return [(pass_end(by_pass[r.pass_no]), r.end) for r in self.results]


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One batch with faults: a random kill, a crash after a commit, a stop request, then the resume to the end.

    Plus a resource sample of this process, as the dashboard and the service append one.
    """
    tmp = tmp_path_factory.mktemp("story")
    docs = make_documents(1000, seed=21, min_bytes=200, max_bytes=2500)
    permanent = next(d["id"] for d in docs if isinstance(d, dict) and isinstance(d.get("id"), str)
                     and isinstance(d.get("content"), str) and d["content"].strip())
    source = write_input(tmp / "input.json", [LONG_TAIL, *docs])
    plan = FaultPlan(seed=5, transient_rate=0.05, permanent_ids=(permanent,), slow_ids=("long-tail",))
    spec = spec_for(solution_module(), source, tmp / "run", plan)
    prepare(spec, fresh=True)
    run = Run()
    run.results.append(run_pass(spec, 1, CrashPlan(kind="random", window=(0.05, 0.3))))
    run.results.append(run_pass(spec, 2, CrashPlan(kind="after_commit", at=5)))
    seen: list[dict[str, Any]] = []
    run.results.append(run_pass(spec, 3, on_events=seen.extend,
                                stop=lambda: "SIGTERM" if any(e["ev"] == Ev.SINK_PUT for e in seen) else None))
    run.results.append(run_pass(spec, 4))
    append_event(spec.run_dir / "ledger.jsonl", RESOURCE_EVENT, pass_no=4, by="test",
                 **sample(psutil.Process(os.getpid()), spec.run_dir))
    run.events = read_events(spec.run_dir / "ledger.jsonl")
    return run


@pytest.fixture(scope="module")
def endings(tmp_path_factory: pytest.TempPathFactory) -> list[Run]:
    """The other ways a pass ends: the processor raises, the input is refused, the pass outlasts its timeout,
    the module does not import."""
    tmp = tmp_path_factory.mktemp("endings")
    source = write_input(tmp / "input.json", make_documents(10, seed=1, min_bytes=100, max_bytes=300))
    raises = tmp / "raises.py"
    raises.write_text("async def process_documents_batch(documents, **kw):\n    raise RuntimeError('boom')\n",
                      encoding="utf-8")
    hangs = tmp / "hangs.py"
    hangs.write_text("import time\nasync def process_documents_batch(documents, **kw):\n    time.sleep(60)\n",
                     encoding="utf-8")
    broken = tmp / "broken.py"
    broken.write_text("import not_a_module_anywhere\n", encoding="utf-8")
    bad = tmp / "bad.json"
    bad.write_text('{"documents": 5}', encoding="utf-8")
    runs = []
    for name, impl, batch, timeout in (("raises", raises, source, 120.0), ("bad", raises, bad, 120.0),
                                       ("hangs", hangs, source, 1.0), ("broken", broken, source, 120.0)):
        spec = spec_for(impl, batch, tmp / name)
        spec.timeout_s = timeout
        results = run_passes(spec, [])
        runs.append(Run(read_events(tmp / name / "ledger.jsonl"), results))
    return runs


def problems(events: list[dict[str, Any]]) -> list[str]:
    found = []
    for ev in events:
        if ev["ev"] not in FIELDS:
            found.append(f"unlisted kind {ev['ev']!r}")
            continue
        found += [f"{ev['ev']}: {p}" for p in FIELDS[Ev(ev["ev"])].problems(ev)]
    return sorted(set(found))


class TestARealRun:
    def test_the_run_wrote_every_kind_a_batch_with_faults_crashes_and_a_stop_writes(self, story: Run) -> None:
        """The story is what it claims: faults, a planned crash, a parent's kill, a stop, a resume to the end."""
        kinds = {e["ev"] for e in story.events}
        assert kinds >= {Ev.PASS_START, Ev.CALL_START, Ev.CALL_OK, Ev.CALL_FAIL, Ev.SINK_PUT, Ev.STATE, Ev.CRASH,
                         Ev.KILL, Ev.STOP, Ev.STOPPED, Ev.PASS_END, Ev.RESOURCE}, sorted(kinds)

    def test_every_event_of_the_run_matches_the_table(self, story: Run) -> None:
        """No event of an unlisted kind, none without a listed field, none with a field the table does not name."""
        assert problems(story.events) == []

    def test_every_event_of_the_other_endings_matches_the_table(self, endings: list[Run]) -> None:
        """A processor that raises, a refused input, a timeout and a failed import write listed kinds and fields."""
        events = [e for run in endings for e in run.events]
        assert {Ev.STUDENT_ERROR, Ev.INPUT_ERROR, Ev.TIMEOUT} <= {e["ev"] for e in events}
        assert problems(events) == []

    def test_every_line_carries_the_envelope(self, story: Run, endings: list[Run]) -> None:
        """Kind, time, pass and pid on every line, whoever wrote it (worker or parent)."""
        events = story.events + [e for run in endings for e in run.events]
        assert [e for e in events if not set(ENVELOPE) <= set(e)] == []


class TestOneVocabularyForHowAPassEnded:
    def test_the_ledger_and_the_exit_name_each_pass_of_the_story_alike(self, story: Run) -> None:
        """Killed by the parent, killed by its crash, stopped, ok: the ledger's reading and the runner's agree."""
        assert story.ends_by_ledger_and_by_exit() == [(e, e) for e in (PassEnd.KILLED, PassEnd.KILLED,
                                                                       PassEnd.STOPPED, PassEnd.OK)]

    def test_the_ledger_and_the_exit_name_the_other_endings_alike(self, endings: list[Run]) -> None:
        """Raised, refused input, timeout, failed import: one PassEnd each, by the ledger and by the exit."""
        assert [run.ends_by_ledger_and_by_exit() for run in endings] == [
            [(e, e)] for e in (PassEnd.STUDENT_ERROR, PassEnd.INPUT_ERROR, PassEnd.TIMEOUT, PassEnd.IMPORT_ERROR)]

    def test_the_printed_outcomes_keep_their_words(self, story: Run, endings: list[Run]) -> None:
        """``batchlab run`` and the demo print the words they always printed."""
        outcomes = [r.outcome for r in story.results] + [r.outcome for run in endings for r in run.results]
        assert outcomes == ["killed", "killed", "stopped", "ok", "raised", "bad input", "timeout", "import error"]


@pytest.fixture(scope="module")
def outages(tmp_path_factory: pytest.TempPathFactory) -> list[Run]:
    """The reference through a planned outage, and through the live switch turned off after 20 refused calls."""
    tmp = tmp_path_factory.mktemp("outages")
    source = write_input(tmp / "input.json", make_documents(60, seed=3, min_bytes=100, max_bytes=400))
    planned = spec_for(solution_module(), source, tmp / "planned", FaultPlan(seed=5, outages=((0.0, 1.0),)))
    runs = [Run(results=run_passes(planned, []))]
    switched = spec_for(solution_module(), source, tmp / "switched")
    prepare(switched, fresh=True)
    switch = switched.run_dir / "outage.switch"
    switch.touch()
    refused: list[dict[str, Any]] = []

    def on_events(events: list[dict[str, Any]]) -> None:
        refused.extend(e for e in events if e.get("error") == "unreachable")
        if len(refused) >= 20:
            switch.unlink(missing_ok=True)

    runs.append(Run(results=[run_pass(switched, 1, on_events=on_events)]))
    for run, spec in zip(runs, (planned, switched), strict=True):
        run.events = read_events(spec.run_dir / "ledger.jsonl")
    return runs


class TestAnOutage:
    def test_the_service_was_down_then_up_and_said_so(self, outages: list[Run]) -> None:
        """A planned outage and the live switch: refused calls between an ``outage`` down and up event."""
        for run, source in zip(outages, ("plan", "switch"), strict=True):
            marks = [(e["state"], e["source"]) for e in run.events if e["ev"] == Ev.OUTAGE]
            assert marks[:2] == [("down", source), ("up", "none")], marks
            assert any(e.get("error") == "unreachable" for e in run.events)

    def test_every_event_of_an_outage_matches_the_table(self, outages: list[Run]) -> None:
        assert problems([e for run in outages for e in run.events]) == []

    def test_the_reference_commits_every_document_through_an_outage(self, outages: list[Run]) -> None:
        """Nothing is lost: each pass ended ok and every unique document was committed once."""
        for run in outages:
            assert [r.end for r in run.results][-1] == PassEnd.OK
            puts = [e for e in run.events if e["ev"] == Ev.SINK_PUT]
            assert len({e["ident"] for e in puts}) == len(puts) > 50


def docstring_table() -> dict[str, set[str]]:
    """The kinds of ``ledger``'s docstring table, each with the ``field`` names its row lists."""
    doc = ledger.__doc__ or ""
    body = doc.split("==================  ")[1:-1]
    rows: dict[str, set[str]] = {}
    current = ""
    for line in "".join(body).splitlines():
        match = re.match(r"^``(\w+)``", line)
        if match:
            current = match.group(1)
            rows[current] = set()
            line = line[match.end():]
        if current:
            rows[current] |= set(re.findall(r"``(\w+)``", line))
    return rows


class TestTheTable:
    def test_the_docstring_table_is_the_fields_data(self) -> None:
        """The module docstring lists exactly the kinds and fields of ``FIELDS`` (a reader can trust it)."""
        table = docstring_table()
        assert table == {str(k): set(f.required | f.optional) for k, f in FIELDS.items()}

    def test_a_missing_or_an_unlisted_field_is_named(self) -> None:
        """The check can fail: a call without its attempt, a commit with a stray field."""
        call = {"ev": "call_ok", "t": 1.0, "pass": 1, "pid": 1, "doc_id": "d", "ident": "i", "chunk": 0,
                "call": 1, "latency": 0.1}
        put = {"ev": "sink_put", "t": 1.0, "pass": 1, "pid": 1, "doc_id": "d", "ident": "i", "key": "k",
               "mode": "full", "n": 1, "writes": 1, "upgrade": False, "extra": True}
        assert problems([call, put]) == ["call_ok: missing attempt", "sink_put: unlisted extra"]


def test_a_backfill_pass_writes_upgrades_in_listed_fields(tmp_path: Path) -> None:
    """后续标记待补: the backfill pass's commits are ``sink_put`` lines with ``upgrade`` true, every field listed."""
    from batchlab.backfill import backfill_spec

    docs = make_documents(20, seed=8, min_bytes=100, max_bytes=400, invalid=0, duplicates=0)
    source = write_input(tmp_path / "input.json", docs)
    spec = spec_for(solution_module(), source, tmp_path / "run", FaultPlan(seed=5, permanent_ids=("doc-00003",)))
    run_passes(spec, [])
    prepare(backfill_spec(spec))
    run_pass(backfill_spec(spec), 2)
    events = read_events(spec.run_dir / "ledger.jsonl")
    puts = [(e["pass"], e["mode"], e["upgrade"]) for e in events if e["ev"] == Ev.SINK_PUT]
    assert puts.count((1, "degraded", False)) == 1 and puts[-1] == (2, "full", True) and len(puts) == 21
    assert problems(events) == []
