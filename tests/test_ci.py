"""`.ci/run` runs the README's test command in a fresh virtual environment it creates itself.

Each test copies `.ci/run` beside a README whose test-command block is a small probe, so the
script's own mechanism is checked without installing anything: the command sees a new venv's
interpreter (not the one running the tests, so packages installed on the machine are invisible),
the venv is removed afterwards, and pytest's exit code 5 counts as a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _ci_folder(tmp_path: Path, command: str) -> Path:
    repo = tmp_path / "repo"
    (repo / ".ci").mkdir(parents=True)
    shutil.copy(ROOT / ".ci" / "run", repo / ".ci" / "run")
    (repo / "README.md").write_text(
        f"# probe\n\n<!-- test-command:start -->\n```\n{command}\n```\n<!-- test-command:end -->\n", encoding="utf-8")
    return repo


def _run(repo: Path, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "TMPDIR": str(tmp_path), "EXPLORE_CI_PYTHON": sys.executable,
                   "EXPLORE_CI_VENV_OPTIONS": "--without-pip", **env}  # a venv in ~0.1 s; the probes need no pip
    return subprocess.run(["bash", str(repo / ".ci" / "run")], capture_output=True, text=True, timeout=300,
                          env=environment, stdin=subprocess.DEVNULL)


def test_the_command_runs_in_a_fresh_venv_that_is_removed_afterwards(tmp_path):
    probe = tmp_path / "probe.txt"
    command = (f"python -c \"import sys, importlib.util; open('{probe}', 'w').write(sys.prefix + ' ' + "
               f"str(importlib.util.find_spec('torch') is not None))\"")
    repo = _ci_folder(tmp_path, command)
    result = _run(repo, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    prefix, sees_torch = probe.read_text().split()
    assert Path(prefix) != Path(sys.prefix) and Path(prefix).name == "venv"
    assert sees_torch == "False"  # the test process has torch; the fresh venv does not
    assert not Path(prefix).exists()  # the temporary venv is removed when CI ends
    assert "fresh virtual environment" in result.stdout


def test_exit_code_5_of_pytest_fails_ci(tmp_path):
    result = _run(_ci_folder(tmp_path, "exit 5"), tmp_path)
    assert result.returncode == 1
    assert "collected no tests" in result.stdout


def test_a_failing_command_fails_ci(tmp_path):
    result = _run(_ci_folder(tmp_path, "true && false && true"), tmp_path)
    assert result.returncode == 1


def test_a_venv_that_already_exists_is_refused(tmp_path):
    existing = tmp_path / "old-venv"
    existing.mkdir()
    result = _run(_ci_folder(tmp_path, "true"), tmp_path, EXPLORE_CI_VENV=str(existing))
    assert result.returncode == 1 and "must be fresh" in result.stdout


@pytest.mark.skipif(shutil.which("awk") is None, reason="the script reads the README with awk")
def test_the_readme_has_a_test_command_for_ci():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("<!-- test-command:start -->", 1)[1].split("<!-- test-command:end -->", 1)[0]
    assert "pytest" in block and "pip install" in block
