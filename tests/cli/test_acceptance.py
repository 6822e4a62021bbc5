"""The GPU acceptance command runs in CI with --device cpu (smaller sizes), so that it cannot rot."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import needs_fashion_mnist
from study_helpers import subprocess_env


@needs_fashion_mnist
def test_acceptance_command_runs_on_cpu(tmp_path):
    out = tmp_path / "acc"
    done = subprocess.run([sys.executable, "-m", "explore.cli", "acceptance", "--device", "cpu", "--out", str(out)],
                          capture_output=True, text=True, timeout=900, env=subprocess_env(), check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line[:4] in ("PASS", "FAIL", "SKIP")]
    names = [line.split()[1] for line in lines]
    assert names == ["study", "memory", "bench-latency", "validate-proxy", "ablate", "bench-proxy"]
    assert all(line.startswith("SKIP" if name == "memory" else "PASS") for line, name in zip(lines, names))
    report = (out / "report.md").read_text()
    assert "**PASSED**" in report
    assert re.search(r"compile graphs ours/timm: m0 [1-9]\d*/[1-9]\d*", report)  # compile really compiled
    assert str(tmp_path) not in report  # commands ran in the report folder: relative paths only
    assert "explore study --space cga --device cpu --out runs" in report


def test_acceptance_refuses_an_unavailable_device(tmp_path):
    done = subprocess.run([sys.executable, "-m", "explore.cli", "acceptance", "--device", "cuda:7", "--out",
                           str(tmp_path / "x")], capture_output=True, text=True, timeout=120, env=subprocess_env(),
                          check=False)
    assert done.returncode == 1
    assert done.stderr.strip().startswith("error: --device")
    assert not (tmp_path / "x").exists()
