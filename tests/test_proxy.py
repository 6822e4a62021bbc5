"""`explore validate-proxy` end to end (tiny budget) and its input checks."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from explore.cli import app
from explore.errors import ExploreError
from explore.proxy import sample_architectures, validate_proxy
from tests.conftest import needs_fashion_mnist


def test_sampled_architectures_are_distinct_and_feasible():
    configs = sample_architectures("cga", 5, in_chans=1, num_classes=10, seed=1)
    assert len({c.config_hash() for c in configs}) == 5
    assert all(s.width % s.heads == 0 for c in configs for s in c.stages if s.token_mixer == "cga")


def test_budgets_and_count_checked():
    with pytest.raises(ExploreError, match="--long-epochs"):
        validate_proxy("cga", 4, short_epochs=1, long_epochs=4)
    with pytest.raises(ExploreError, match="--archs"):
        validate_proxy("cga", 2)


TINY_SPACE = """
[space]
name = "tiny"
stages = 2
[model]
img_size = { value = 32 }
[stage]
width = [{ choices = [16, 32] }, { choices = [32, 48] }]
depth = { value = 1 }
heads = { value = 2 }
qk_dim = { value = 4 }
kernel = { value = 3 }
"""


@needs_fashion_mnist
def test_validate_proxy_cli(tmp_path):
    space = tmp_path / "tiny.toml"
    space.write_text(TINY_SPACE)
    result = CliRunner().invoke(app, ["validate-proxy", "--space", str(space), "--archs", "3", "--short-epochs", "0.5", "--long-epochs", "2.5",
                                      "--max-train", "128", "--max-val", "64", "--batch-size", "64",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "Kendall tau" in result.output
    table = pd.read_csv(tmp_path / "proxy_validity.csv")
    assert len(table) == 3 and {"short_top1", "long_top1", "params", "macs"} <= set(table.columns)
    assert (tmp_path / "proxy_validity.png").read_bytes()[:4] == b"\x89PNG"
    text = (tmp_path / "proxy_validity.md").read_text()
    assert "explore validate-proxy" in text and "Spearman rho" in text


@needs_fashion_mnist
def test_proxy_throughput_benchmark_runs(tmp_path):
    from explore.bench_proxy import main

    assert main(["--images", "256", "--batch-size", "64", "--img-size", "32", "--workers", "0",
                 "--out", str(tmp_path)]) == 0
    text = (tmp_path / "proxy_throughput_cpu.md").read_text()
    assert "ratio proxy / plain" in text and "plain DataLoader" in text
