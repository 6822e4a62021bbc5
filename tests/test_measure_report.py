"""Measurement (params, MACs, latency) and report rendering from a trials table."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from torch import nn

from explore.errors import DeviceError
from explore.measure import count_macs, count_params, measure_latency
from explore.models import build
from explore.report import pareto_table, state_counts, write_report
from tests.conftest import tiny_config


class _TwoLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        y = self.bn(self.conv(x)).flatten(2)  # (B, 8, HW)
        attn = y.transpose(1, 2) @ y  # (B, HW, HW): HW*HW*8 MACs
        return self.fc((y @ attn).mean(2))  # y @ attn: 8*HW*HW MACs


def test_macs_count_convs_linear_and_matmuls_but_not_batchnorm():
    hw = 4 * 4
    expected = 8 * 3 * 9 * hw + 2 * (8 * hw * hw) + 8 * 5
    assert count_macs(_TwoLayer(), img_size=4, in_chans=3) == expected
    assert count_params(_TwoLayer()) == 8 * 3 * 9 + 2 * 8 + 8 * 5 + 5


def test_latency_protocol_fields_and_restores_state():
    model = build(tiny_config()).train()
    threads = torch.get_num_threads()
    result = measure_latency(model, 64, 1, batch_size=4, warmup=1, repeats=5, threads=1)
    assert result.median_ms > 0 and result.iqr_ms >= 0 and result.cv >= 0
    assert math.isclose(result.throughput_img_s, 4 / (result.median_ms / 1e3))
    assert (result.batch_size, result.img_size, result.threads, result.repeats) == (4, 64, 1, 5)
    assert model.training and torch.get_num_threads() == threads
    attrs = result.as_attrs()
    assert attrs["latency_median_ms"] == result.median_ms and attrs["latency_device"] == "cpu"
    # the model still trains after an inference-mode measurement (cached bias indices stay usable)
    model(torch.randn(2, 1, 64, 64)).sum().backward()


def test_latency_rejects_bad_device_and_repeats():
    model = build(tiny_config())
    with pytest.raises(DeviceError, match="--device"):
        measure_latency(model, 64, 1, device="tpu")
    with pytest.raises(ValueError, match="repeats"):
        measure_latency(model, 64, 1, repeats=1)


def _frame() -> pd.DataFrame:
    return pd.DataFrame({
        "number": [0, 1, 2, 3],
        "state": ["COMPLETE", "COMPLETE", "PRUNED", "COMPLETE"],
        "top1": [80.0, 70.0, float("nan"), 85.0],
        "latency_ms": [10.0, 12.0, float("nan"), 20.0],
        "pareto": [True, False, False, True],
        "params": [1e6, 2e6, None, 3e6],
        "macs": [5e6, 6e6, None, 9e6],
        "latency_iqr_ms": [0.1, 0.2, None, 0.3],
        "summary": ["a", "b", "", "c"],
        "pruned_reason": [None, None, "infeasible: stages[0].heads = 3", None],
    })


def test_pareto_table_and_report_files(tmp_path):
    frame = _frame()
    table = pareto_table(frame)
    assert table["trial"].tolist() == [0, 3]  # fastest first, dominated trial 1 left out
    assert table["params (M)"].tolist() == [1.0, 3.0]
    assert state_counts(frame) == {"COMPLETE": 3, "PRUNED": 1}
    meta = {"study_name": "s", "space_name": "cga", "settings": {"dataset": "fashion_mnist", "device": "cpu"}}
    paths = write_report(frame, tmp_path / "r", meta, "explore report runs/s")
    text = paths.markdown.read_text()
    assert "|          85 |" in text  # trial 3 top-1 in the Pareto table
    assert "infeasible: stages[0].heads = 3" in text
    assert len(pd.read_csv(paths.csv)) == 4
    assert paths.png.read_bytes()[:4] == b"\x89PNG"


def test_macs_count_fused_attention():
    from explore.nn.attention import MultiHeadSelfAttention

    mhsa = MultiHeadSelfAttention(32, heads=2, qk_dim=8, v_dim=16, table_side=4)
    n = 4 * 4
    qkv = 32 * 2 * (8 + 8 + 16) * n
    attention = 2 * n * n * (8 + 16)  # Q K^T and A V per head, through scaled_dot_product_attention
    proj = (2 * 16) * 32 * n
    assert count_macs(mhsa, img_size=4, in_chans=32) == qkv + attention + proj
