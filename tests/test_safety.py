"""Safety: passwords never shown or stored, files parsed as data, no unsafe loading, report names
that cannot leave their folder, and storage errors as one clear line."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from typer.testing import CliRunner

from explore.cli import app
from explore.resources import safe_name as _safe_name
from explore.errors import SpaceError
from explore.space import load_space
from explore.search import driver_url, mask_password, scrub
from explore.search import open_study, run_study
from tests.study_helpers import (  # noqa: F401 - fixtures
    TINY_ARGS,
    one_thread,
    postgres_url,
    tiny_settings,
    unique_name,
    write_space,
)

runner = CliRunner()
SOURCES = sorted((Path(__file__).resolve().parent.parent / "explore").rglob("*.py"))


@pytest.mark.parametrize("url, masked", [
    ("postgresql://user:secret@host:5432/db", "postgresql://user:***@host:5432/db"),
    ("postgresql+psycopg://u:p@ss/w:rd@10.0.0.1/db", "postgresql+psycopg://u:***@10.0.0.1/db"),
    ("mysql://root:pw@localhost/db?charset=utf8&password=again", "mysql://root:***@localhost/db?charset=utf8&password=***"),
    ("postgresql://user@host/db", "postgresql://user@host/db"),
    ("sqlite:///runs/cga/study.db", "sqlite:///runs/cga/study.db"),
    ("runs/cga/journal.log", "runs/cga/journal.log"),
])
def test_mask_password(url, masked):
    assert mask_password(url) == masked


def test_scrub_removes_the_password_from_any_text():
    url = "postgresql://u:p@ss/w:rd@10.0.0.1/db"
    text = scrub(f"FATAL for {url}: password 'p@ss/w:rd' rejected; driver url postgresql+psycopg://u:p@ss/w:rd@x", url)
    assert "p@ss/w:rd" not in text and "u:***@10.0.0.1" in text


def test_password_never_printed_stored_or_written(tmp_path, postgres_url, monkeypatch, one_thread):  # noqa: F811
    password = postgres_url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    name = unique_name("mask")
    out = tmp_path / "runs"
    space = write_space(tmp_path)
    result = runner.invoke(app, ["study", "--space", str(space), "--study-name", name, "--trials", "1", "--out",
                                 str(out), *TINY_ARGS, "--storage", postgres_url])
    assert result.exit_code == 0, result.output
    assert "explore:***@127.0.0.1" in result.output and password not in result.output

    # the storage URL from the environment (not visible in the process list) works the same
    monkeypatch.setenv("EXPLORE_STORAGE", postgres_url)
    report_dir = tmp_path / "report"
    rep = runner.invoke(app, ["report", name, "--out", str(report_dir)])
    assert rep.exit_code == 0, rep.output
    assert password not in rep.output

    study = open_study(name, postgres_url)
    stored = [study.user_attrs]
    for trial in study.get_trials():
        stored += [trial.user_attrs, trial.system_attrs, trial.params]
    assert password not in json.dumps(stored, default=str)
    assert study.user_attrs["settings"]["storage"] == mask_password(postgres_url)
    # nowhere in the database either: every row of every table, as text
    engine = sqlalchemy.create_engine(driver_url(postgres_url))
    with engine.connect() as conn:
        tables = sqlalchemy.inspect(conn).get_table_names()
        assert "trial_user_attributes" in tables and "study_system_attributes" in tables
        for table in tables:
            rows = conn.execute(sqlalchemy.text(f'SELECT t::text FROM "{table}" t')).scalars().all()
            assert not any(password in row for row in rows), table
    engine.dispose()
    written = [p for folder in (out, report_dir) for p in folder.rglob("*") if p.is_file()]
    assert {p.name for p in written} >= {"summary.md", "trials.csv", "pareto.png"}
    for path in written:
        assert password.encode() not in path.read_bytes(), path
    assert "explore:***@" in (report_dir / "summary.md").read_text()  # the command line, masked


def test_storage_errors_are_one_line_without_the_password(tmp_path, postgres_url):  # noqa: F811
    wrong = postgres_url.replace(postgres_url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1], "Wr0ngSecret")
    space = write_space(tmp_path)
    for url in (wrong, "postgresql://explore:Wr0ngSecret@127.0.0.1:1/nothing", "nosuchdb://u:Wr0ngSecret@h/db"):
        result = runner.invoke(app, ["study", "--space", str(space), "--out", str(tmp_path / "runs"), *TINY_ARGS,
                                     "--storage", url])
        assert result.exit_code == 1, result.output
        assert "Wr0ngSecret" not in result.output and "Traceback" not in result.output
        assert result.output.count("error:") == 1 and "--storage = " in result.output
    assert not (tmp_path / "runs").exists()


def test_report_names_from_study_names_stay_in_the_output_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "work").mkdir()
    storage = f"sqlite:///{tmp_path / 'work' / 'other.db'}"
    for evil in ("../../x", "..", "/etc/cron.d/x", ".hidden/../../y", "a\\..\\..\\z"):
        optuna.create_study(study_name=evil, storage=storage, directions=["maximize", "minimize"])
        result = runner.invoke(app, ["report", evil, "--storage", storage])
        assert result.exit_code == 0, result.output
    reports = (tmp_path / "reports").resolve()
    written = [p.resolve() for p in tmp_path.rglob("*") if p.is_file() and p.suffix in (".md", ".csv", ".png")]
    assert len(written) == 15
    assert all(reports in p.parents and p.parent.parent == reports for p in written)
    for evil in ("../../x", "..", "/etc/cron.d/x", ""):
        assert "/" not in _safe_name(evil) and not _safe_name(evil).startswith(".")


def test_space_files_are_data_not_code(tmp_path):
    marker = tmp_path / "pwned"
    space = write_space(tmp_path, f"""\
[space]
name = "evil"
stages = 1
[stage]
width = {{ value = "__import__('os').system('touch {marker}')" }}
depth = {{ value = 1 }}
""", "evil.toml")
    with pytest.raises(SpaceError, match=r"evil.toml: stage.width.value"):
        load_space(space)
    assert not marker.exists()


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and (getattr(n.func, "attr", None) == name or getattr(n.func, "id", None) == name)]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_no_eval_no_pickle_and_torch_load_only_with_weights_only(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    builtins = [c for name in ("eval", "exec", "compile", "__import__") for c in _calls(tree, name)
                if isinstance(c.func, ast.Name)]  # (model.eval() is a method, not the builtin)
    assert not builtins, f"{builtins[0].func.id} at line {builtins[0].lineno}" if builtins else ""
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in node.names} | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "pickle" not in imported and "dill" not in imported and "yaml" not in imported
    for call in _calls(tree, "load"):
        if isinstance(call.func, ast.Attribute) and getattr(call.func.value, "id", None) == "torch":
            keywords = {k.arg: k.value for k in call.keywords}
            assert isinstance(keywords.get("weights_only"), ast.Constant) and keywords["weights_only"].value is True, \
                f"torch.load without weights_only=True at line {call.lineno}"


def test_journal_run_folders_open_for_reports(tmp_path, one_thread):  # noqa: F811
    settings = tiny_settings(tmp_path, trials=1, storage=str(tmp_path / "runs" / "t" / "journal.log"))
    run_study(settings)
    result = runner.invoke(app, ["report", str(tmp_path / "runs" / "t")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "runs" / "t" / "report" / "trials.csv").is_file()
    # and the default storage of the folder is now its journal file, for any number of workers
    assert tiny_settings(tmp_path, workers=1).storage_url.endswith("journal.log")
