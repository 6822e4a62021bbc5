"""explore supernet train / extract: a tiny run, a subnet written and equal to build(config) with
the supernet's weights, an architecture outside the space as one error line."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from typer.testing import CliRunner

from explore.arch import ArchConfig
from explore.cli import app
from explore.nn import build
from explore.supernet import extract
from explore.supernet.train import load_supernet

TINY = str(Path(__file__).resolve().parents[1] / "fixtures" / "spaces" / "tiny_supernet.toml")


def test_train_then_extract(tmp_path):
    runner = CliRunner()
    run = tmp_path / "run"
    result = runner.invoke(app, ["supernet", "train", "--space", TINY, "--dataset", "synthetic", "--max-train", "16",
                                 "--max-val", "8", "--epochs", "1", "--batch-size", "16", "--random-subnets", "0",
                                 "--out", str(run)])
    assert result.exit_code == 0, result.output
    state = torch.load(run / "supernet.pt", weights_only=True)
    assert state["command"].startswith("explore supernet train --space")
    supernet, _ = load_supernet(run)
    config = supernet.sample(__import__("random").Random(0))
    cfg_file = tmp_path / "arch.json"
    cfg_file.write_text(config.to_json())
    out = tmp_path / "model.pt"
    result = runner.invoke(app, ["supernet", "extract", str(run), str(cfg_file), "--out", str(out),
                                 "--recalibration-images", "0"])
    assert result.exit_code == 0, result.output
    saved = torch.load(out, weights_only=True)
    model = build(ArchConfig.from_dict(saved["config"]))
    model.load_state_dict(saved["model"])
    model.eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert (model(x) - extract(supernet, config)(x)).abs().max() <= 1e-5
    outside = json.loads(config.to_json())
    outside["stages"][0]["width"] = 40
    cfg_file.write_text(json.dumps(outside))
    result = runner.invoke(app, ["supernet", "extract", str(run), str(cfg_file), "--out", str(tmp_path / "no.pt")])
    assert result.exit_code == 1
    assert "error:" in result.output and "stage0.width" in result.output and "40" in result.output
    assert not (tmp_path / "no.pt").exists()
