"""`explore study --space msla|hybrid` end to end on Fashion-MNIST (tiny budget)."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from explore.cli import app
from tests.conftest import needs_fashion_mnist


@needs_fashion_mnist
@pytest.mark.parametrize("space", ["msla", "hybrid"])
def test_study_runs_on_msla_and_hybrid_spaces(tmp_path, space):
    out = tmp_path / "runs"
    result = CliRunner().invoke(app, ["study", "--space", space, "--out", str(out), "--trials", "2", "--epochs", "1",
                                      "--batch-size", "64", "--max-train", "128", "--max-val", "64", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "done: 2 complete" in result.output
    frame = pd.read_csv(out / space / "report" / "trials.csv")
    done = frame[frame["state"] == "COMPLETE"]
    assert len(done) == 2 and done["macs"].gt(0).all() and done["latency_ms"].gt(0).all()
