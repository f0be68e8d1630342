"""The course materials say what the kit does: thresholds from the one threshold file, commands that work.

The teaching files (checklist.md, teacher-script.md, blackboard-steps.md) are read
by people in front of a class; a threshold that drifted or a command that fails
there costs a lesson. These tests read them as a teacher would and run their shell
blocks in a fresh workspace.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from batchlab.cli import build_parser
from batchlab.paths import kit_root
from batchlab.thresholds import load_thresholds

ROOT = kit_root()
TEACHING_FILES = ("checklist.md", "teacher-script.md", "blackboard-steps.md")
COMMAND_FILES = (*TEACHING_FILES, "README.md", "examples/README.md")
#: A bound as the materials write it: ">= 99 %", "≤ 1%", "<= 60 s".
BOUND = re.compile(r"(>=|<=|≥|≤)\s*(\d+(?:\.\d+)?)\s*(%|s\b|秒|分钟)")
SKIP_MARK = "# not-run-in-tests:"
EXPECT_EXIT = re.compile(r"#\s*expect exit (\d+)\s*$")


def read(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


@dataclass
class Block:
    file: str
    line: int
    lines: list[str]

    @property
    def skip_reason(self) -> str | None:
        first = self.lines[0].strip() if self.lines else ""
        return first[len(SKIP_MARK):].strip() if first.startswith(SKIP_MARK) else None

    def commands(self) -> list[tuple[str, int]]:
        """Each shell command (continuations joined) with the exit code it is expected to end with."""
        result: list[tuple[str, int]] = []
        buffer = ""
        for raw in self.lines:
            line = raw.strip()
            if not buffer and (not line or line.startswith("#")):
                continue
            if line.endswith("\\"):
                buffer += line[:-1] + " "
                continue
            command = buffer + line
            buffer = ""
            match = EXPECT_EXIT.search(command)
            result.append((command, int(match.group(1)) if match else 0))
        return result


def bash_blocks(name: str) -> list[Block]:
    """Fenced ```bash blocks of a Markdown file (indented ones inside lists too)."""
    blocks: list[Block] = []
    current: Block | None = None
    indent = ""
    for no, line in enumerate(read(name).splitlines(), start=1):
        stripped = line.strip()
        if current is None:
            if stripped.startswith("```bash"):
                indent = line[: len(line) - len(line.lstrip())]
                current = Block(name, no, [])
        elif stripped.startswith("```"):
            blocks.append(current)
            current = None
        else:
            current.lines.append(line[len(indent):] if line.startswith(indent) else line)
    assert current is None, f"{name}: unclosed code block"
    return blocks


def markdown_batchlab_commands(name: str) -> list[str]:
    """Every `batchlab ...` command a file shows, in inline code or in shell blocks."""
    text = read(name)
    found = re.findall(r"`(batchlab [^`\n]+)`", text)
    for block in bash_blocks(name):
        for command, _ in block.commands():
            found += [part.strip() for part in command.split("&&") if part.strip().startswith("batchlab ")]
    return [re.sub(r"\s+#.*$", "", c).strip() for c in found]


def kit_env() -> dict[str, str]:
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env.pop("BATCHLAB_ROOT", None)
    return env


def run_blocks(blocks: list[Block], workspace: Path) -> list[str]:
    """Run every command of the blocks in order in ``workspace``; the failures, described."""
    failures: list[str] = []
    for block in blocks:
        if block.skip_reason is not None:
            continue
        for command, expected in block.commands():
            proc = subprocess.run(["bash", "-c", command], cwd=workspace, env=kit_env(), capture_output=True,
                                  text=True, timeout=300)
            if proc.returncode != expected:
                failures.append(f"{block.file}:{block.line}: `{command}` exited {proc.returncode}, expected "
                                f"{expected}\n--- stdout ---\n{proc.stdout[-1500:]}\n--- stderr ---\n"
                                f"{proc.stderr[-1500:]}")
            elif expected == 2:
                assert '"error"' in proc.stdout and '"hints"' in proc.stdout, (
                    f"{block.file}:{block.line}: `{command}` exited 2 without the unified error structure")
    return failures


@pytest.fixture
def classroom_workspace(tmp_path: Path) -> Iterator[Path]:
    """A fresh folder laid out like the repository root for the commands: examples/ copied, nothing run yet.

    Afterwards, whatever a command left running in it (the service block starts ``batchlab serve`` in the
    background and stops it in its last line; a failing line in between would leave it up) is killed with its
    children, so that a failure costs the test, never a stray server on the machine.
    """
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    yield tmp_path
    kill_processes_working_in(tmp_path)


def kill_processes_working_in(folder: Path) -> None:
    import psutil

    inside = str(folder.resolve())
    for proc in psutil.process_iter(["pid", "cwd"]):
        cwd = proc.info.get("cwd") or ""
        if proc.pid != os.getpid() and (cwd == inside or cwd.startswith(inside + os.sep)):
            try:
                for child in proc.children(recursive=True):
                    child.kill()
                proc.kill()
            except psutil.Error:
                pass


@pytest.fixture
def kit_runs_untouched():
    """Fails a test that leaves anything new in the repository's runs/ or reports/."""
    def listing() -> set[Path]:
        return {p for d in ("runs", "reports") if (ROOT / d).exists() for p in (ROOT / d).iterdir()}

    before = listing()
    yield
    assert listing() == before, "the commands wrote into the repository instead of their workspace"


class TestChecklist:
    def test_every_bound_in_checklist_equals_the_threshold_file_for_the_metric_on_that_line(self):
        thresholds = load_thresholds()
        checked: set[str] = set()
        problems: list[str] = []
        for no, line in enumerate(read("checklist.md").splitlines(), start=1):
            bounds = BOUND.findall(line)
            if not bounds:
                continue
            named = [m for m in thresholds if f"`{m}`" in line]
            if len(named) != 1:
                problems.append(f"line {no} shows a bound but names {len(named)} threshold metrics: {line.strip()}")
                continue
            t = thresholds[named[0]]
            for op, number, unit in bounds:
                op = {"≥": ">=", "≤": "<="}.get(op, op)
                value = float(number) / 100 if unit == "%" else float(number) * (60 if unit == "分钟" else 1)
                expected_op, bound = (">=", t.min) if t.min is not None else ("<=", t.max)
                if op != expected_op or bound is None or abs(value - bound) > 1e-9:
                    problems.append(f"line {no}: {op} {number} {unit} for `{t.metric}`, the threshold file says "
                                    f"{t.text}")
            checked.add(t.metric)
        assert problems == []
        assert checked == set(thresholds), f"thresholds never shown in checklist.md: {set(thresholds) - checked}"

    def test_reports_latency_p50_p95_and_throughput(self):
        text = read("checklist.md")
        assert "`latency_p50_s`" in text and "`latency_p95_s`" in text and "`throughput_docs_per_min`" in text

    def test_shows_the_unified_error_structure_and_the_degraded_path(self):
        text = read("checklist.md")
        assert all(f'"{field}"' in text for field in ("error", "code", "message", "details", "hints"))
        assert "降级路径（degraded path）" in text and '"degraded"' in text

    def test_every_checkbox_item_says_how_to_verify_it(self):
        items = re.split(r"\n- \[ \] ", read("checklist.md"))[1:]
        assert len(items) >= 15
        items = [re.split(r"\n#", item)[0] for item in items]
        unverified = [item.splitlines()[0] for item in items
                      if "`batchlab " not in item and "`pytest " not in item and "```bash" not in item]
        assert unverified == []


class TestTeacherScript:
    def test_timeline_is_the_lessons_90_minutes(self):
        text = read("teacher-script.md")
        parts = dict(re.findall(r"(导入|讲解|实践|总结)（(\d+)'）", text))
        assert parts == {"导入": "10", "讲解": "25", "实践": "40", "总结": "15"}
        assert sum(map(int, parts.values())) == 90

    def test_defines_the_lessons_terms_and_answers_its_questions(self):
        text = read("teacher-script.md")
        for term in ("检查点", "checkpoint", "幂等", "idempotency", "重试与退避", "exactly-once", "at-least-once"):
            assert term in text, term
        assert "为什么在工程实践中常选 at-least-once + 幂等" in text and "检查点应放在何处" in text
        assert text.count("答：") >= 2

    def test_has_the_3_percent_fault_injection_exercise_command(self):
        commands = markdown_batchlab_commands("teacher-script.md")
        assert any(c.startswith("batchlab demo") and "--fault-rate 0.03" in c for c in commands)

    def test_every_shell_block_runs(self, classroom_workspace, kit_runs_untouched):
        failures = run_blocks(bash_blocks("teacher-script.md"), classroom_workspace)
        assert failures == [], "\n\n".join(failures)


class TestBlackboardSteps:
    def test_has_the_five_steps_of_the_lesson_plan_each_with_a_command(self):
        text = read("blackboard-steps.md")
        steps = re.split(r"^## 第 (\d) 步", text, flags=re.M)
        numbers = steps[1::2]
        assert numbers == ["1", "2", "3", "4", "5"]
        for number, body in zip(numbers, steps[2::2], strict=True):
            assert "```bash" in body, f"step {number} has no command"
            assert "全班应该看到" in body, f"step {number} does not say what the class should see"

    def test_only_the_grader_is_left_out_of_the_executed_commands_and_with_a_reason(self):
        skipped = [b for b in bash_blocks("blackboard-steps.md") if b.skip_reason is not None]
        for block in skipped:
            assert block.skip_reason, f"line {block.line}: skipped without a reason"
            assert all(c.startswith("pytest grader") for c, _ in block.commands()), block.lines

    def test_every_command_runs_in_a_fresh_checkout_layout(self, classroom_workspace, kit_runs_untouched):
        blocks = bash_blocks("blackboard-steps.md")
        assert sum(len(b.commands()) for b in blocks if b.skip_reason is None) >= 10
        failures = run_blocks(blocks, classroom_workspace)
        assert failures == [], "\n\n".join(failures)
        report = classroom_workspace / "reports" / "step3"
        assert (report / "report.md").is_file() and (report / "plots" / "throughput.png").is_file()


@pytest.mark.parametrize("name", COMMAND_FILES)
def test_every_batchlab_command_shown_parses_with_the_real_command_line(name, monkeypatch):
    """Options and verbs in the materials exist (commands with [optional] syntax are usage lines, not examples)."""
    monkeypatch.chdir(ROOT)
    parser = build_parser()
    verbs = next(a for a in parser._actions if a.dest == "command").choices  # noqa: SLF001
    commands = [c for c in markdown_batchlab_commands(name) if "[" not in c and "|" not in c]
    assert commands or name == "examples/README.md" or name == "README.md"
    bad = []
    for command in commands:
        argv = shlex.split(command)[1:]
        if len(argv) == 1:  # a verb named in prose ("`batchlab report` writes ..."): the verb must exist
            if argv[0] not in verbs:
                bad.append(f"{command}: no such verb")
            continue
        try:
            parser.parse_args(argv)
        except Exception as exc:  # noqa: BLE001 (a KitError or SystemExit: both mean the line is wrong)
            bad.append(f"{command}: {exc}")
        except SystemExit as exc:
            bad.append(f"{command}: exit {exc.code}")
    assert bad == []


def test_the_report_template_is_chinese_and_has_the_lessons_after_class_questions():
    text = read("templates/submission-report.md")
    assert "为什么在工程实践中常选 at-least-once" in text and "检查点应放在何处" in text
    assert "分布式环境下" in text and "3 %" in text
    assert text.count("（请在此作答）") >= 6
