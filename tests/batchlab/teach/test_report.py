"""``batchlab report``: a real two-pass run (pass 1 SIGKILLed) turned into a complete submission folder."""

from __future__ import annotations

import csv
import json
import re
import shutil
import struct
import warnings
from pathlib import Path
from typing import Any

import pytest
from batchlab.cli import main
from batchlab.errors import KitError, UsageError
from batchlab.ledger import read_events
from batchlab.metrics import metrics_for_run
from batchlab.teach.demo import run_demo
from batchlab.teach.report import style as plot_style
from batchlab.teach.report.build import PLOTS, build_report
from batchlab.teach.report.markdown import PLACEHOLDER, fill_template
from batchlab.teach.report.style import LABELS, bundled_cjk_fonts, choose_style, covers, find_cjk_font
from batchlab.teach.report.views import expected_backoff, retry_delays
from batchlab.thresholds import load_thresholds

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def killed_and_resumed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory of 40 generated documents: pass 1 killed during a service call, pass 2 resumed."""
    run = tmp_path_factory.mktemp("report") / "run"
    result = run_demo(docs=40, seed=7, fault_rate=0.08, run_dir=run, latency_ms=2.0, concurrency=4)
    assert result.crash_fired and len(result.passes) == 2
    return run


@pytest.fixture(scope="module")
def english_report(killed_and_resumed_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Any]]:
    """The report of that run with English plot labels, and every warning emitted while drawing it."""
    out = tmp_path_factory.mktemp("out") / "report-en"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_report(run_dir=killed_and_resumed_run, out=out, lang="en")
    return out, list(caught)


def missing_glyph_warnings(caught: list[Any]) -> list[str]:
    return [str(w.message) for w in caught if "missing from" in str(w.message) or "Glyph" in str(w.message)]


class TestReportFolder:
    def test_writes_the_markdown_the_data_files_and_six_projector_sized_pngs(self, english_report):
        out, _ = english_report
        for name in ("report.md", "report.json", "metrics.csv", "passes.csv"):
            assert (out / name).stat().st_size > 0, name
        for name in PLOTS:
            width, height = png_size(out / "plots" / f"{name}.png")
            assert width >= 1200 and height >= 700, (name, width, height)

    def test_markdown_has_no_unfilled_placeholder_and_links_only_existing_plots(self, english_report):
        out, _ = english_report
        text = (out / "report.md").read_text(encoding="utf-8")
        assert not PLACEHOLDER.search(text) and "{{" not in text
        links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
        assert sorted(links) == sorted(f"plots/{name}.png" for name in PLOTS)
        assert all((out / link).is_file() for link in links)

    def test_markdown_shows_the_ledgers_figures_and_each_threshold(self, english_report, killed_and_resumed_run):
        out, _ = english_report
        text = (out / "report.md").read_text(encoding="utf-8")
        m = metrics_for_run(killed_and_resumed_run)
        assert f"{m.completion_rate * 100:.2f} %" in text
        assert f"{m.duplicate_rate * 100:.2f} %" in text
        assert f"{m.fail_rate * 100:.2f} %" in text
        assert f"{m.resume_time_s:.3f} s" in text
        assert f"p50 = {m.latency_p50_s:.3f} s" in text and f"p95 = {m.latency_p95_s:.3f} s" in text
        for t in load_thresholds().values():
            assert t.text in text
        assert f"共 {m.total} 篇" in text

    def test_markdown_marks_the_kill_and_compares_the_two_passes(self, english_report, killed_and_resumed_run):
        out, _ = english_report
        text = (out / "report.md").read_text(encoding="utf-8")
        crash = next(e for e in read_events(killed_and_resumed_run / "ledger.jsonl") if e["ev"] == "crash")
        assert "第 1 轮在 +" in text and f"第 {crash['at']} 次" in text
        assert "| 1 | 被杀死（SIGKILL） |" in text and "| 2 | 正常结束 |" in text
        assert re.search(r"\+\s*\d+\.\d+s\s+pass 1\s+crash", text), "the log excerpt shows the crash"

    def test_report_json_agrees_with_the_metrics_of_the_run(self, english_report, killed_and_resumed_run):
        out, _ = english_report
        data = json.loads((out / "report.json").read_text(encoding="utf-8"))
        m = metrics_for_run(killed_and_resumed_run)
        for name in ("completion_rate", "duplicate_rate", "fail_rate", "resume_time_s", "retries"):
            assert data["metrics"][name] == pytest.approx(m.value(name)), name
        assert [t["metric"] for t in data["thresholds"]][: len(load_thresholds())] == list(load_thresholds())
        assert [p["pass_no"] for p in data["passes"]] == [1, 2]
        assert data["passes"][0]["exit"] == "killed"
        assert data["retry_delays"]["count"] > 0

    def test_metrics_csv_has_one_row_per_threshold_with_its_verdict(self, english_report, killed_and_resumed_run):
        out, _ = english_report
        with (out / "metrics.csv").open(encoding="utf-8") as fh:
            rows = {r["metric"]: r for r in csv.DictReader(fh)}
        m = metrics_for_run(killed_and_resumed_run)
        for name, t in load_thresholds().items():
            assert rows[name]["threshold"] == t.text
            assert rows[name]["ok"] == str(t.passes(m.value(name)))
            assert float(rows[name]["value"]) == pytest.approx(m.value(name))
        assert rows["latency_p95_s"]["threshold"] == "reported"

    def test_a_cli_run_has_no_resource_samples_and_its_plot_says_where_they_come_from(self, english_report):
        out, _ = english_report
        data = json.loads((out / "report.json").read_text(encoding="utf-8"))
        assert data["resource_samples"] == 0 and data["plots"]["resources"] == "plots/resources.png"

    def test_english_plots_emit_no_missing_glyph_warning(self, english_report):
        _, caught = english_report
        assert missing_glyph_warnings(caught) == []


class TestRetryDelays:
    def test_measured_delays_are_never_shorter_than_the_configured_backoff(self, killed_and_resumed_run):
        spec = json.loads((killed_and_resumed_run / "spec.json").read_text(encoding="utf-8"))
        delays = retry_delays(read_events(killed_and_resumed_run / "ledger.jsonl"))
        assert delays, "8 % faults must cause retries"
        bands = {a: lo for a, lo, _ in expected_backoff(spec["config"], sorted({d.attempt for d in delays}))}
        short = [d for d in delays if d.delay_s < bands[d.attempt] - 1e-3]
        assert short == []

    def test_pairs_a_failure_with_the_next_call_of_the_same_chunk_in_the_same_pass_only(self):
        events = [
            {"ev": "call_fail", "t": 1.0, "pass": 1, "ident": "a", "doc_id": "A", "chunk": 0, "attempt": 1},
            {"ev": "call_start", "t": 1.1, "pass": 1, "ident": "b", "doc_id": "B", "chunk": 0, "attempt": 1},
            {"ev": "call_start", "t": 1.25, "pass": 1, "ident": "a", "doc_id": "A", "chunk": 0, "attempt": 2},
            {"ev": "call_fail", "t": 2.0, "pass": 1, "ident": "b", "doc_id": "B", "chunk": 1, "attempt": 1},
            {"ev": "call_start", "t": 9.0, "pass": 2, "ident": "b", "doc_id": "B", "chunk": 1, "attempt": 1},
        ]
        delays = retry_delays(events)
        assert [(d.doc_id, d.attempt, round(d.delay_s, 6)) for d in delays] == [("A", 1, 0.25)]


class TestBadInput:
    def error_of(self, capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict[str, Any]:
        assert main(argv) == 2
        payload = json.loads(capsys.readouterr().out)
        assert set(payload["error"]) == {"code", "message", "details", "hints"}
        return payload["error"]

    def test_a_folder_that_is_not_a_run_gives_the_unified_error_and_exit_2(self, tmp_path, capsys):
        error = self.error_of(capsys, ["report", str(tmp_path), "--out", str(tmp_path / "out")])
        assert error["code"] == "not_a_run"
        assert not (tmp_path / "out").exists()

    def test_a_run_with_an_empty_ledger_gives_the_unified_error_and_exit_2(self, tmp_path, capsys,
                                                                           killed_and_resumed_run):
        run = tmp_path / "run"
        run.mkdir()
        shutil.copy(killed_and_resumed_run / "spec.json", run / "spec.json")
        (run / "ledger.jsonl").write_text("", encoding="utf-8")
        error = self.error_of(capsys, ["report", str(run), "--out", str(tmp_path / "out")])
        assert error["code"] == "empty_ledger"
        assert not (tmp_path / "out").exists()

    def test_an_existing_non_empty_out_is_refused_and_left_intact(self, tmp_path, capsys, killed_and_resumed_run):
        out = tmp_path / "out"
        out.mkdir()
        (out / "earlier.md").write_text("an earlier report", encoding="utf-8")
        error = self.error_of(capsys, ["report", str(killed_and_resumed_run), "--out", str(out)])
        assert error["code"] == "output_exists"
        assert [p.name for p in out.iterdir()] == ["earlier.md"]
        assert (out / "earlier.md").read_text(encoding="utf-8") == "an earlier report"

    def test_an_unknown_template_placeholder_is_an_error_and_writes_nothing(self, tmp_path, killed_and_resumed_run):
        template = tmp_path / "t.md"
        template.write_text("# {{ completion_rate_typo }}\n", encoding="utf-8")
        with pytest.raises(KitError) as exc:
            build_report(run_dir=killed_and_resumed_run, out=tmp_path / "out", lang="en", template=template)
        assert exc.value.code == "template_error" and "completion_rate_typo" in exc.value.details["unknown"]
        assert not (tmp_path / "out").exists()
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    def test_fill_template_replaces_every_placeholder(self):
        assert fill_template("a {{ x }} b {{y}}", {"x": 1, "y": "two"}) == "a 1 b two"


class TestCommandLine:
    def test_report_verb_writes_into_an_empty_out_and_prints_the_files_as_json(self, tmp_path, capsys,
                                                                                killed_and_resumed_run):
        out = tmp_path / "empty"
        out.mkdir()
        assert main(["report", str(killed_and_resumed_run), "--out", str(out), "--lang", "en", "--json"]) == 0
        printed = json.loads(capsys.readouterr().out)
        assert Path(printed["report"]) == out / "report.md"
        assert {Path(f).name for f in printed["files"]} >= {f"{name}.png" for name in PLOTS} | {"report.md"}
        assert printed["plot_language"] == "en"


class TestGraderResults:
    def test_the_graders_score_table_is_attached_and_copied(self, tmp_path, killed_and_resumed_run):
        results = {"score": 5.0, "max_score": 8.0, "extra_data": {"hidden_scenarios": 4, "grader_errors": []},
                   "tests": [{"number": "05.1", "name": "resume: skips committed keys", "score": 2.0, "max_score": 2.0,
                              "status": "passed"},
                             {"number": "05.2", "name": "resume: redoes work killed before the sink write",
                              "score": 3.0, "max_score": 6.0, "status": "failed"}]}
        source = tmp_path / "results.json"
        source.write_text(json.dumps(results), encoding="utf-8")
        out = tmp_path / "out"
        build_report(run_dir=killed_and_resumed_run, out=out, lang="en", grader_results=source)
        text = (out / "report.md").read_text(encoding="utf-8")
        assert "**5 / 8**" in text and "1 / 2 项通过" in text and "另有 4 个隐藏场景" in text
        assert "| 05.2 | resume: redoes work killed before the sink write | 3 / 6 | ❌ 未通过 |" in text
        assert json.loads((out / "grader-results.json").read_text(encoding="utf-8")) == results

    def test_without_grader_results_the_report_says_how_to_attach_them(self, english_report):
        out, _ = english_report
        assert "--grader-results grader-results/results.json" in (out / "report.md").read_text(encoding="utf-8")
        assert not (out / "grader-results.json").exists()

    def test_a_file_that_is_not_grader_results_gives_the_unified_error_before_any_work(self, tmp_path, capsys,
                                                                                       killed_and_resumed_run):
        bogus = tmp_path / "results.json"
        bogus.write_text('{"score": 1}', encoding="utf-8")
        assert main(["report", str(killed_and_resumed_run), "--out", str(tmp_path / "out"),
                     "--grader-results", str(bogus)]) == 2
        assert json.loads(capsys.readouterr().out)["error"]["code"] == "bad_grader_results"
        assert not (tmp_path / "out").exists()


class TestFonts:
    def test_without_a_cjk_font_labels_are_english_and_forcing_chinese_is_refused(self):
        from matplotlib import font_manager

        latin_only = [e for e in font_manager.fontManager.ttflist if e.name.startswith("DejaVu")]
        assert latin_only, "matplotlib ships DejaVu"
        assert find_cjk_font(latin_only) is None
        assert choose_style("auto", latin_only).lang == "en"
        with pytest.raises(UsageError) as exc:
            choose_style("zh", latin_only)
        assert exc.value.code == "no_cjk_font"

    def test_chinese_labels_drawn_with_a_latin_font_do_warn_so_the_glyph_checks_can_fail(self, tmp_path):
        from batchlab.teach.report.plots import plot_failures
        from batchlab.teach.report.style import PlotStyle

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            plot_failures(tmp_path / "tofu.png", reasons={"timeout": 3}, rejected=(), style=PlotStyle("zh"))
        assert missing_glyph_warnings(caught)

    def test_english_labels_need_no_glyph_beyond_ascii(self):
        assert all(ord(ch) < 128 for text in LABELS["en"].values() for ch in text)

    def test_with_a_cjk_font_labels_are_chinese_and_render_without_missing_glyphs(self, killed_and_resumed_run,
                                                                                 tmp_path):
        entry = find_cjk_font()
        assert entry is not None, "pip install -e . brings mpl-font (Noto Sans CJK SC): reinstall the kit"
        assert covers(entry.fname, "吞吐量延迟", getattr(entry, "index", 0))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = build_report(run_dir=killed_and_resumed_run, out=tmp_path / "zh", lang="auto")
        assert result.style.lang == "zh" and result.style.family == entry.name
        assert missing_glyph_warnings(caught) == []


class TestBundledFont:
    """Issue 8 item 8: the install command brings a CJK font, so a fresh machine gets Chinese plots."""

    def test_the_kits_dependency_ships_noto_sans_cjk_sc_with_every_label_glyph(self):
        files = bundled_cjk_fonts()
        assert [f.name for f in files] == ["NotoSansCJKsc-Regular.otf", "NotoSansCJKsc-Bold.otf"], \
            "mpl-font is a dependency in pyproject.toml: pip install -e . installs it"
        for f in files:
            assert covers(str(f), plot_style._label_chars("zh")), f

    def test_the_font_is_open_licensed_as_the_readme_says(self):
        from matplotlib.ft2font import FT2Font

        for f in bundled_cjk_fonts():
            names = FT2Font(str(f)).get_sfnt()
            licence = [v.decode("utf-16-be", "replace") for (_, _, _, name_id), v in names.items() if name_id == 13]
            assert any("SIL Open Font License, Version 1.1" in text for text in licence), f

    def test_a_fresh_process_picks_chinese_labels_from_the_bundled_font_with_no_missing_glyph(
            self, killed_and_resumed_run, tmp_path):
        """A new interpreter with an empty matplotlib cache (as after pip install on a fresh machine)."""
        import os
        import subprocess
        import sys

        script = (
            "import json, sys, warnings\n"
            "from batchlab.teach.report.build import build_report\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.simplefilter('always')\n"
            "    r = build_report(run_dir=sys.argv[1], out=sys.argv[2], lang='auto')\n"
            "print(json.dumps({'lang': r.style.lang, 'family': r.style.family, 'file': r.style.font_file,\n"
            "                  'warnings': [str(w.message) for w in caught]}))\n"
        )
        env = {**os.environ, "MPLCONFIGDIR": str(tmp_path / "mplconfig"), "MPLBACKEND": "Agg"}
        proc = subprocess.run([sys.executable, "-c", script, str(killed_and_resumed_run), str(tmp_path / "zh")],
                              capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        got = json.loads(proc.stdout.strip().splitlines()[-1])
        assert got["lang"] == "zh" and got["family"] == "Noto Sans CJK SC", got
        if find_cjk_font(_system_fonts()) is None:  # no system CJK font here: the font came from the package
            assert got["file"] in [str(f) for f in bundled_cjk_fonts()], got
        assert [w for w in got["warnings"] if "missing from" in w or "Glyph" in w] == []
        report = (tmp_path / "zh" / "report.md").read_text(encoding="utf-8")
        assert all((tmp_path / "zh" / "plots" / f"{name}.png").is_file() for name in PLOTS) and report

    def test_without_the_package_and_without_a_system_cjk_font_labels_fall_back_to_english(
            self, killed_and_resumed_run, tmp_path, monkeypatch):
        import sys

        from matplotlib import font_manager

        monkeypatch.setitem(sys.modules, plot_style.BUNDLED_FONT_PACKAGE, None)  # the package made unavailable
        latin_only = [e for e in font_manager.fontManager.ttflist if e.name.startswith("DejaVu")]
        monkeypatch.setattr(font_manager.fontManager, "ttflist", latin_only)
        monkeypatch.setattr(font_manager, "findSystemFonts", lambda *a, **k: [])
        assert bundled_cjk_fonts() == [] and plot_style.register_bundled_fonts() == []
        assert choose_style("auto").lang == "en"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = build_report(run_dir=killed_and_resumed_run, out=tmp_path / "en", lang="auto")
        assert result.style.lang == "en" and result.style.family is None
        assert missing_glyph_warnings(caught) == []


def _system_fonts() -> list[Any]:
    """The fonts matplotlib knows apart from the bundled package's."""
    from matplotlib import font_manager

    bundled = {str(f) for f in bundled_cjk_fonts()}
    return [e for e in font_manager.fontManager.ttflist if e.fname not in bundled]


@pytest.mark.slow
def test_the_resource_samples_a_dashboard_run_records_are_drawn(tmp_path):
    """The teacher dashboard samples its worker about once a second into the ledger; the report draws them all."""
    from batchlab.paths import solution_module
    from batchlab.teach.dashboard.board import DashboardSettings
    from batchlab.teach.dashboard.model import DashboardModel

    model = DashboardModel(impl=solution_module(), runs_dir=tmp_path / "runs",
                           settings=DashboardSettings(documents=60, concurrency=4, latency_ms=40.0, fault_rate=0.0))
    try:
        model.run()
        model.wait(timeout=120)
        run_dir = model.run_dir
        assert run_dir is not None
        result = build_report(run_dir=run_dir, out=tmp_path / "report", lang="en")
        recorded = [e for e in read_events(run_dir / "ledger.jsonl") if e["ev"] == "resource"]
    finally:
        model.close()
    assert recorded, "the dashboard recorded no sample (the run is a few seconds long)"
    assert result.data["resource_samples"] == len(recorded)
    assert png_size(tmp_path / "report" / "plots" / "resources.png")[0] >= 1200
