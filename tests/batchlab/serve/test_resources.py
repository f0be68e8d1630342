"""Resource samples: in the ledger while a batch runs, shown by the API, ignored by the metrics and the grader."""

from __future__ import annotations

import importlib
from pathlib import Path

from batchlab.cli import main as cli_main
from batchlab.documents import load_batch
from batchlab.ledger import read_events
from batchlab.metrics import compute_metrics, usable_events
from batchlab.paths import kit_root
from batchlab.resources import disk_usage_bytes
from batchlab.sink import read_outputs, read_puts

from .conftest import batch_bytes, wait_state


def test_disk_usage_counts_the_files_of_a_folder_tree(tmp_path: Path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_bytes(b"x" * 100)
    (tmp_path / "g").write_bytes(b"y" * 23)
    assert disk_usage_bytes(tmp_path) == 123


def test_a_running_batch_gets_about_one_sample_a_second_and_they_change_no_metric(client, manager, capsys, monkeypatch):
    batch = client.post("/batches", content=batch_bytes(30), params={"latency_ms": "60", "concurrency": "1"},
                        headers={"content-type": "application/json"}).json()
    done = wait_state(client, batch["id"], "completed", "failed", "interrupted")
    assert done["state"] == "completed"
    run = manager.store.run_dir(batch["id"])
    events = read_events(run / "ledger.jsonl")
    samples = [e for e in events if e["ev"] == "resource"]
    wall = done["timings"]["passes"][0]["duration_s"]
    assert 1 <= len(samples) <= wall + 1, (len(samples), wall)
    for s in samples:
        assert s["cpu_percent"] >= 0 and s["rss_bytes"] > 1_000_000 and s["open_files"] >= 1
        assert s["disk_bytes"] > 0 and s["pass"] == 1 and s["by"] == "server"
    assert done["resource"]["ev"] == "resource"

    documents = load_batch(manager.store.input_path(batch["id"])).documents
    outputs, puts = read_outputs(run / "sink.sqlite"), read_puts(run / "sink.sqlite")
    with_samples = compute_metrics(documents, usable_events(events), outputs, puts)
    without = compute_metrics(documents, usable_events([e for e in events if e["ev"] != "resource"]), outputs, puts)
    assert with_samples.summary() | {"throughput_docs_per_min": 0} == without.summary() | {
        "throughput_docs_per_min": 0}
    assert abs(with_samples.throughput_docs_per_min - without.throughput_docs_per_min) <= \
        0.05 * without.throughput_docs_per_min  # a sample lands before the pass's last event (or within a poll)

    assert cli_main(["metrics", str(run)]) == 0  # `batchlab metrics` reads the ledger with samples in it
    assert "completion rate" in capsys.readouterr().out

    monkeypatch.syspath_prepend(str(kit_root()))  # the grader package lives at the kit's root
    analysis = importlib.import_module("grader.analysis")
    views = analysis.pass_views(documents, usable_events(events), puts)
    plain = analysis.pass_views(documents, usable_events([e for e in events if e["ev"] != "resource"]), puts)
    assert [(v.pass_no, v.exit, v.calls, v.puts) for v in views] == [(v.pass_no, v.exit, v.calls, v.puts)
                                                                     for v in plain]
