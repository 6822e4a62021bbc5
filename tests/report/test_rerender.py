"""Every committed report re-renders from the data stored beside it (issue 28).

``explore rerender FOLDER --out TMP`` renders a report again without training or timing; the
result must equal what is committed (the markdown text and the CSV tables byte for byte; plots are
written but not compared, since their bytes depend on matplotlib's version).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from explore.cli import app
from explore.cli.rerender import RENDERERS, report_kind

REPORTS = Path(__file__).resolve().parents[2] / "reports"
FOLDERS = sorted(p for p in REPORTS.iterdir() if p.is_dir())
RENDERABLE = [p for p in FOLDERS if report_kind(p) is not None]

runner = CliRunner()


@pytest.mark.parametrize("folder", RENDERABLE, ids=[p.name for p in RENDERABLE])
def test_a_committed_report_rerenders_to_what_is_committed(folder, tmp_path):
    result = runner.invoke(app, ["rerender", str(folder), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())  # sub-folders: runs of a collection
    assert any(path.suffix == ".md" for path in written)  # report.md, summary.md, proxy_validity.md, bench_*.md
    for path in written:
        if path.suffix in (".md", ".csv"):
            assert (tmp_path / path).read_text(encoding="utf-8") == (folder / path).read_text(encoding="utf-8"), path


def test_every_committed_report_has_a_renderer():
    # a new report comes with a renderer and the data it needs, or it is not committed (issue 28)
    assert [p.name for p in FOLDERS if report_kind(p) is None] == []
    assert len(RENDERABLE) == len(FOLDERS) >= 30


def test_no_two_kinds_claim_one_folder():
    for folder in FOLDERS:
        claims = [kind for kind, (holds, _) in RENDERERS.items() if holds(folder)]
        assert len(claims) <= 1, (folder.name, claims)


def test_a_folder_without_a_renderer_is_one_error_line(tmp_path):
    folder = tmp_path / "by_hand"
    folder.mkdir()
    (folder / "report.md").write_text("# written by hand, no data beside it\n", encoding="utf-8")
    result = runner.invoke(app, ["rerender", str(folder), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "error:" in result.output and "no renderer knows this kind of report yet" in result.output
    assert not (tmp_path / "out").exists()
    result = runner.invoke(app, ["rerender", str(tmp_path / "missing")])
    assert result.exit_code == 1 and "no such report folder" in result.output


def test_a_proxy_validity_command_line_that_no_longer_parses_is_one_error_line(tmp_path):
    folder = tmp_path / "report"
    folder.mkdir()
    source = REPORTS / "proxy_validity_cga_cpu_1v5"
    (folder / "proxy_validity.csv").write_text((source / "proxy_validity.csv").read_text(encoding="utf-8"))
    text = (source / "proxy_validity.md").read_text(encoding="utf-8")
    (folder / "proxy_validity.md").write_text(text.replace("--archs 12", "--no-such-option 12"), encoding="utf-8")
    out = tmp_path / "out"
    result = runner.invoke(app, ["rerender", str(folder), "--out", str(out)])
    assert result.exit_code == 1
    assert "error:" in result.output and "no-such-option" in result.output
    assert not out.exists()
