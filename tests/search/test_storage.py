"""Storages a user names with --storage: PostgreSQL without its driver says which extra to install."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

from explore.cli import app
from explore.errors import ExploreError
from explore.search import POSTGRES_INSTALL, check_driver

URL = "postgresql://explore:secret-pw@127.0.0.1:1/explore_test"


@pytest.fixture
def no_driver(monkeypatch):
    """The seam: ``import psycopg`` (and psycopg2) fail as if the packages were not installed."""
    monkeypatch.setitem(sys.modules, "psycopg", None)
    monkeypatch.setitem(sys.modules, "psycopg2", None)


@pytest.mark.parametrize("args", [["study", "--dataset", "synthetic", "--storage", URL], ["report", "s", "--storage", URL]],
                         ids=["study", "report"])
def test_postgresql_without_a_driver_names_the_extra_to_install(args, no_driver, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --storage = 'postgresql://explore:***@"), result.output
    assert POSTGRES_INSTALL == "pip install 'explore[postgres]'" and POSTGRES_INSTALL in lines[0]
    assert "secret-pw" not in result.output and "Failed to import" not in result.output
    assert not any(tmp_path.iterdir())  # nothing written


def test_the_driver_check_leaves_other_storages_alone(no_driver):
    check_driver("sqlite:///runs/cga/study.db")
    check_driver("runs/postgresql.log")  # a journal file, whatever its name
    with pytest.raises(ExploreError, match="psycopg2"):
        check_driver("postgresql+psycopg2://u@h/db")  # the driver the URL names
