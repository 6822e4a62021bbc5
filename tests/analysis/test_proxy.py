"""`explore validate-proxy` end to end (tiny budget) and its input checks."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from explore.cli import app
from explore.errors import ExploreError
from explore.analysis import validate_proxy
from explore.space import sample_architectures
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
    from typer.testing import CliRunner

    from explore.cli import app

    done = CliRunner().invoke(app, ["bench", "proxy", "--images", "128", "--batch-size", "32", "--img-size", "32",
                                    "--workers", "0", "--warmup-steps", "1", "--out", str(tmp_path)])
    assert done.exit_code == 0, done.output
    text = (tmp_path / "proxy_throughput_cpu.md").read_text()
    assert "ratio proxy / plain" in text and "plain DataLoader" in text
    assert "warmed up first for 1 untimed step(s)" in text and "precision fp32" in text


def test_proxy_throughput_benchmark_warms_both_loops_before_timing(monkeypatch):
    """Both loops run untimed on their own models before either is timed (issue 13)."""
    import explore.analysis.bench.proxy as bench
    from explore.errors import ExploreError
    from explore.train import load_dataset

    events: list[tuple[str, float]] = []
    monkeypatch.setattr(bench, "load_dataset", lambda *a, **k: load_dataset("synthetic", max_train=96, max_val=8))
    monkeypatch.setattr(bench, "plain_loop", lambda *a, recipe, **k: events.append(("plain", recipe.epochs)) or 1.0)

    class Result:
        train_img_s = 2.0

    monkeypatch.setattr(bench, "train_proxy", lambda *a, recipe, **k: events.append(("proxy", recipe.epochs)) or Result)
    bench.run_proxy_bench(images=96, batch_size=32, img_size=32, epochs=2, warmup_steps=3)
    assert events == [("plain", 1.0), ("proxy", 1.0), ("plain", 2.0), ("proxy", 2.0)]  # 3 warm-up steps = 1 epoch
    events.clear()
    bench.run_proxy_bench(images=96, batch_size=32, img_size=32, warmup_steps=0)
    assert events == [("plain", 1.0), ("proxy", 1.0)]
    with pytest.raises(ExploreError, match="--images"):
        bench.run_proxy_bench(images=16, batch_size=32)  # no full batch: refused, not an endless loop
