"""Shared check of the re-render tests: a report whose stored data is bad fails in one line."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from explore.cli import app


def assert_rerender_is_one_error_line(folder: Path, out: Path, field: str) -> None:
    """``explore rerender FOLDER --out OUT`` exits 1 with exactly one output line, an ``error:`` line
    naming ``field``, and writes nothing (``out`` is not created)."""
    done = CliRunner().invoke(app, ["rerender", str(folder), "--out", str(out)])
    assert done.exit_code == 1, done.output
    lines = done.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and field in lines[0], done.output
    assert not out.exists()
