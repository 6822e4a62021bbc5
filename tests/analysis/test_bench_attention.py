"""The attention-scaling benchmark runs (tiny sizes) and fits growth exponents correctly."""

from __future__ import annotations

import math

from typer.testing import CliRunner

from explore.analysis.bench.attention import KINDS, growth_exponent, run
from explore.cli import app


def test_growth_exponent_of_known_curves():
    tokens = [64, 256, 1024, 4096]
    assert math.isclose(growth_exponent(tokens, [n * 0.01 for n in tokens]), 1.0)
    assert math.isclose(growth_exponent(tokens, [n * n * 1e-5 for n in tokens]), 2.0)


def test_benchmark_runs_every_kind_and_writes_table(tmp_path):
    tokens, results = run("cpu", sides=(4, 9), channels=32, repeats=2, threads=1)
    assert tokens == [16, 81] and set(results) == set(KINDS)
    assert all(len(ms) == 2 and min(ms) > 0 for ms in results.values())
    done = CliRunner().invoke(app, ["bench", "attention", "--sides", "4,8", "--channels", "32", "--repeats", "2",
                                    "--out", str(tmp_path)])
    assert done.exit_code == 0, done.output
    text = (tmp_path / "attention_scaling_cpu.md").read_text()
    assert "growth exponent" in text and "ReLU linear" in text
    assert len((tmp_path / "attention_scaling_cpu.csv").read_text().splitlines()) == 1 + 2 * len(KINDS)
