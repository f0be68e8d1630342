"""The lesson's defaults are written once (``batchlab.defaults.LESSON``) and every front-end starts from them."""

from __future__ import annotations

import argparse

import pytest
from batchlab.cli import build_parser
from batchlab.defaults import LESSON
from batchlab.teach import chaos_cmd
from batchlab.teach.demo import run_demo

FIELDS = {"seed": LESSON.seed, "fault_rate": LESSON.fault_rate, "concurrency": LESSON.concurrency,
          "latency_ms": LESSON.latency_ms}


def test_run_demo_defaults_to_the_lesson() -> None:
    """``run_demo()`` without arguments runs the lesson's standard run."""
    assert {name: (run_demo.__kwdefaults__ or {})[name] for name in FIELDS} == FIELDS


@pytest.mark.parametrize("argv", [["demo"], ["run"], ["chaos", "RUN"]])
def test_the_command_line_defaults_to_the_lesson(argv: list[str]) -> None:
    """``batchlab demo``, ``run`` and ``chaos`` without options use the lesson's numbers."""
    args: argparse.Namespace = build_parser().parse_args(argv)
    assert {name: getattr(args, name) for name in FIELDS} == FIELDS


def test_chaos_registers_its_verb_with_the_lesson_defaults() -> None:
    """The chaos verb's own parser (``teach/chaos_cmd.py``) reads ``LESSON``, not a copy of its numbers."""
    parser = argparse.ArgumentParser()
    chaos_cmd.add_parser(parser.add_subparsers())
    args = parser.parse_args(["chaos", "RUN"])
    assert {name: getattr(args, name) for name in FIELDS} == FIELDS
