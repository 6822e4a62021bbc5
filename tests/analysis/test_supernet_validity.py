"""explore validate-proxy --supernet: subnets stratified over MACs, inherited against stand-alone top-1
(Kendall tau, Spearman rho overall and per MACs tercile, the params / MACs baselines, the seed-to-seed
ceiling), the report files; a supernet of another space is one error line."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from explore.arch import ArchConfig
from explore.analysis.supernet_validity import rank_table, stratified_subnets
from explore.cli import app
from explore.supernet import inherited_top1
from explore.supernet.train import SupernetSettings, load_run_data, load_supernet, train_supernet
from tests.rerender_helpers import assert_rerender_is_one_error_line
from tests.study_helpers import FIXTURES, one_thread  # noqa: F401 - fixture

TINY = str(FIXTURES / "spaces" / "tiny_supernet.toml")


@dataclass(frozen=True)
class _Point:
    value: int

    def config_hash(self) -> str:
        return str(self.value)


def test_stratified_subnets_take_one_per_macs_bin():
    picked = stratified_subnets(lambda rng: _Point(rng.randrange(12)), 3, macs_of=lambda p: 10 * p.value, pool=12)
    assert [p.value // 4 for p, _ in picked] == [0, 1, 2]  # bins {0-3}, {4-7}, {8-11} of the sorted pool
    assert [m for _, m in picked] == [10 * p.value for p, _ in picked]
    with pytest.raises(Exception, match="--archs"):
        stratified_subnets(lambda rng: _Point(rng.randrange(2)), 3, macs_of=lambda p: p.value)


def test_rank_table_compares_each_score_with_the_first_seed():
    table = pd.DataFrame({"standalone_top1": [10.0, 20, 30, 40, 50, 60], "inherited_top1": [1.0, 2, 3, 4, 6, 5],
                          "params": [6, 5, 4, 3, 2, 1], "macs": [1, 2, 3, 4, 5, 6],
                          "standalone_top1_seed2": [10.0, 20, 30, 40, 50, 60], "tercile": [0, 0, 1, 1, 2, 2]})
    ranks = rank_table(table).set_index(["comparison", "subset"])
    assert ranks.loc[("inherited top-1", "all"), "kendall_tau"] == pytest.approx(13 / 15)  # one discordant pair
    assert ranks.loc[("params", "all"), "kendall_tau"] == pytest.approx(-1.0)
    assert ranks.loc[("MACs", "all"), "spearman_rho"] == pytest.approx(1.0)
    assert ranks.loc[("stand-alone, second seed (ceiling)", "all"), "kendall_tau"] == pytest.approx(1.0)
    assert ranks.loc[("inherited top-1", "MACs tercile 1"), "archs"] == 2
    assert pd.isna(ranks.loc[("inherited top-1", "MACs tercile 1"), "kendall_tau"])  # below 3 subnets


def test_validate_proxy_with_a_supernet_end_to_end(tmp_path, one_thread):
    run = tmp_path / "supernet"
    train_supernet(SupernetSettings(space=TINY, dataset="synthetic", max_train=64, max_val=32, epochs=1, batch_size=32,
                                    random_subnets=0), run)
    runner = CliRunner()
    out = tmp_path / "report"
    result = runner.invoke(app, ["validate-proxy", "--space", TINY, "--supernet", str(run), "--archs", "6",
                                 "--short-epochs", "1", "--batch-size", "32", "--recalibration-images", "32",
                                 "--note", "a tiny run", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "inherited vs stand-alone: Kendall tau" in result.output
    stored = json.loads((out / "supernet_validity.json").read_text(encoding="utf-8"))
    meta = stored["meta"]  # the cost baseline: the largest subnet trained once at the supernet's epochs and data
    assert meta["largest_train_seconds"] > 0 and meta["largest_summary"]
    assert meta["cost_ratio"] == pytest.approx(meta["supernet_train_seconds"] / meta["largest_train_seconds"])
    assert stored["note"] == "a tiny run" and stored["epochs"] == 1.0
    table = pd.read_csv(out / "supernet_validity.csv")
    assert len(table) == 6 and table["config_hash"].nunique() == 6
    assert table["macs"].is_monotonic_increasing and table["tercile"].tolist() == [0, 0, 1, 1, 2, 2]
    assert {"params", "inherited_top1", "standalone_top1", "standalone_top1_seed2"} <= set(table.columns)
    supernet, _ = load_supernet(run)
    data = load_run_data(SupernetSettings(space=TINY, dataset="synthetic", max_train=64, max_val=32))
    first = ArchConfig.from_json(table["config"].iloc[0])
    assert table["inherited_top1"].iloc[0] == inherited_top1(supernet, first, data.train, data.val, mean=data.mean,
                                                             std=data.std, images=32)
    assert (out / "supernet_validity.png").read_bytes()[:4] == b"\x89PNG"
    text = (out / "supernet_validity.md").read_text(encoding="utf-8")
    assert "explore validate-proxy --space" in text and "--supernet" in text
    for row in ("inherited top-1", "params", "MACs", "second seed (ceiling)", "MACs tercile 3"):
        assert row in text
    assert "Note: a tiny run" in text and "- cost: the supernet's training took" in text
    # written again from the stored table and JSON alone (issue 28), τ computed again
    again = runner.invoke(app, ["rerender", str(out), "--out", str(tmp_path / "again")])
    assert again.exit_code == 0, again.output
    for name in ("supernet_validity.md", "supernet_validity.csv", "supernet_validity.json"):
        assert (tmp_path / "again" / name).read_text() == (out / name).read_text(), name
    del stored["meta"]["space"]
    (tmp_path / "again" / "supernet_validity.json").write_text(json.dumps(stored))
    assert_rerender_is_one_error_line(tmp_path / "again", tmp_path / "bad", "supernet_validity.json")
    noted = runner.invoke(app, ["validate-proxy", "--space", TINY, "--note", "x", "--out", str(tmp_path / "plain")])
    assert noted.exit_code == 1 and "--note" in noted.output and not (tmp_path / "plain").exists()
    result = runner.invoke(app, ["validate-proxy", "--space", "cga", "--supernet", str(run), "--archs", "6",
                                 "--out", str(tmp_path / "no")])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--supernet" in errors[0] and str(run) in errors[0]
    assert not Path(tmp_path / "no").exists()
