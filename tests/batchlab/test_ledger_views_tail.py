"""``ledger_views.last_pass_no`` reads a ledger from its end and answers what a scan of every line answers."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from batchlab.ledger import iter_events
from batchlab.ledger_views import last_pass_no


def scanned(path: Path) -> int:
    """The old way: every event of the ledger decoded, the highest ``pass``."""
    best = 0
    for ev in iter_events(path):
        try:
            best = max(best, int(ev.get("pass") or 0))
        except (TypeError, ValueError, OverflowError):
            continue
    return best


def ledger_text(rng: random.Random) -> str:
    """Passes in order, with lines of no pass, foreign lines, a non-numeric pass and maybe a torn last line."""
    lines, pass_no = [], 0
    for _ in range(rng.randint(0, 60)):
        r = rng.random()
        pass_no += r < 0.1
        if r < 0.04:
            lines.append("not json {")
        elif r < 0.08:
            lines.append(json.dumps({"ev": "outage", "t": 1.0}))
        elif r < 0.1:
            lines.append(json.dumps({"ev": "x", "t": 1.0, "pass": "two"}))
        else:
            lines.append(json.dumps({"ev": "x", "t": 1.0, "pass": pass_no, "pad": "检" * rng.randint(0, 40)},
                                    ensure_ascii=False))
    text = "\n".join(lines) + ("\n" if lines and rng.random() < 0.8 else "")
    return text + ('{"ev": "pass_start", "pass": 999' if rng.random() < 0.3 else "")


@pytest.mark.parametrize("block", [1, 5, 64, 1 << 16])
def test_the_last_pass_read_from_the_end_is_the_highest_pass_of_the_whole_ledger(tmp_path: Path, block: int) -> None:
    """On 200 generated ledgers and any block size, the tail read gives the full scan's answer (torn line skipped)."""
    rng = random.Random(block)
    path = tmp_path / "ledger.jsonl"
    for _ in range(200):
        path.write_text(ledger_text(rng), encoding="utf-8")
        assert last_pass_no(path, block=block) == scanned(path), path.read_text(encoding="utf-8")[-300:]


def test_a_missing_or_empty_ledger_has_no_pass(tmp_path: Path) -> None:
    """No file, an empty file, or only a torn line: pass 0 (the next pass is 1)."""
    path = tmp_path / "ledger.jsonl"
    assert last_pass_no(path) == 0
    path.write_text("", encoding="utf-8")
    assert last_pass_no(path) == 0
    path.write_text('{"ev": "pass_start", "pass": 3', encoding="utf-8")
    assert last_pass_no(path) == 0


def test_a_large_ledger_is_read_only_at_its_end(tmp_path: Path) -> None:
    """Past the last block, the earlier lines are not read: damage there does not change the answer."""
    path = tmp_path / "ledger.jsonl"
    body = "".join(json.dumps({"ev": "x", "t": 1.0, "pass": 7}) + "\n" for _ in range(50))
    path.write_text("\x00" * 100_000 + "\n" + body, encoding="utf-8")
    assert last_pass_no(path, block=4096) == 7
