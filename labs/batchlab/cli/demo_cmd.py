"""``batchlab demo``, the README's main job (crash, resume, thresholds), and its progress bars.

Apart from :mod:`batchlab.cli.commands` because it is the one verb with a live display: tqdm bars fed by
the ledger's events as the worker writes them (:class:`LedgerBars`), one per pass, on stderr, silenced by
``--json``. The other verbs print once, at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..errors import EXIT_FAILED, EXIT_OK, UsageError
from .commands import describe_pass


class LedgerBars:
    """tqdm progress bars fed by ledger events: one bar per pass, committed documents of the batch."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = total
        self.enabled = enabled
        self.committed: set[str] = set()
        self.bar: Any = None
        self.retries = 0

    def start(self, pass_no: int) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        self.close()
        self.bar = tqdm(total=self.total, initial=len(self.committed), desc=f"pass {pass_no}", unit="doc",
                        file=sys.stderr, dynamic_ncols=True, leave=True)

    def __call__(self, events: list[dict[str, Any]]) -> None:
        for ev in events:
            if ev.get("ev") == "pass_start":
                self.start(int(ev.get("pass", 0)))
            elif ev.get("ev") == "sink_put" and ev.get("ident") not in self.committed:
                self.committed.add(ev["ident"])
                if self.bar is not None:
                    self.bar.update(1)
            elif ev.get("ev") == "call_start" and int(ev.get("attempt", 1)) > 1:
                self.retries += 1
                if self.bar is not None:
                    self.bar.set_postfix(retries=self.retries, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def say(text: str, quiet: bool) -> None:
    if not quiet:
        print(text, file=sys.stderr)


def cmd_demo(args: argparse.Namespace) -> int:
    from ..batchstream import open_batch
    from ..inventory import count_input, spills
    from ..metrics import format_table
    from ..paths import example_input
    from ..teach.demo import run_demo

    if args.input is not None and args.docs is not None:
        raise UsageError("give --input or --docs, not both", code="usage_error",
                         hints=["--docs N generates an input of N documents."])
    quiet = args.json
    # Validate first: a bad file raises before anything is written.
    if args.docs is not None:
        total = args.docs
    else:  # streamed: the unique count of any input, in memory that does not grow with it
        stream = open_batch(args.input or example_input())
        total = count_input(stream, on_disk=spills(stream.header.documents)).unique
    bars = LedgerBars(total=total, enabled=not quiet)

    def on_pass(result: Any) -> None:
        bars.close()
        say(describe_pass(result), quiet)

    result = run_demo(input_path=args.input, docs=args.docs, seed=args.seed, fault_rate=args.fault_rate,
                      crash=args.crash, at=args.at, concurrency=args.concurrency, impl=args.impl,
                      run_dir=args.run_dir, latency_ms=args.latency_ms, on_events=bars, on_pass=on_pass)
    bars.close()
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
        return EXIT_OK if result.ok else EXIT_FAILED
    m = result.metrics
    print(f"implementation: {result.impl}")
    print(f"input: {result.input} ({m.total} documents, {m.unique} unique, {m.rejected} rejected)")
    print(f"run directory: {result.run_dir}")
    for p in result.passes:
        print(describe_pass(p))
    unfinished = result.unfinished
    if unfinished is not None:  # a TODO stopped the run: say which, not a table of FAILs
        print()
        print("\n".join(unfinished.lines()))
        return EXIT_FAILED
    if len(m.passes) > 1 and m.passes[-1].report:
        rep = m.passes[-1].report
        print(f"resume: skipped {rep.get('skipped', '?')} committed documents, recovered "
              f"{rep.get('recovered', '?')}, executed {rep.get('executed', '?')}")
    if not result.crash_fired:
        print(f"warning: the planned crash ({result.crash.kind}) never fired")
    print()
    print(format_table(m))
    print()
    print("all lesson thresholds met" if result.ok else "some thresholds are not met")
    return EXIT_OK if result.ok else EXIT_FAILED
