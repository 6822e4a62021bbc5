"""Measurement (params, MACs, latency) and report rendering from a trials table."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from torch import nn

from explore.errors import DeviceError, ExploreError
from explore.measure import count_macs, count_params, get_protocol, measure
from explore.nn import build
from explore.report import latency_description, pareto_figure, pareto_table, state_counts, write_report
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
    protocol = get_protocol("cpu-latency", img_size=64, in_chans=1, batch_size=4, warmup=1, repeats=5, threads=1,
                            mode="eager")
    result = measure(model, protocol)
    assert result.median_ms > 0 and result.iqr_ms >= 0 and result.cv >= 0
    assert math.isclose(result.throughput_img_s, 4 / (result.median_ms / 1e3))
    assert result.batch_size == 4 and (result.protocol["img_size"], result.protocol["threads"],
                                       result.protocol["repeats"]) == (64, 1, 5)
    assert model.training and torch.get_num_threads() == threads
    attrs = result.as_attrs()
    assert attrs["latency_median_ms"] == result.median_ms and attrs["latency_protocol_device"] == "cpu"
    # the model still trains after an inference-mode measurement (cached bias indices stay usable)
    model(torch.randn(2, 1, 64, 64)).sum().backward()


def test_latency_rejects_bad_device_and_repeats():
    model = build(tiny_config())
    with pytest.raises(DeviceError, match="--device"):
        measure(model, get_protocol("cpu-latency", img_size=64, in_chans=1, device="tpu"))
    with pytest.raises(ExploreError, match="--repeats"):
        get_protocol("cpu-latency", img_size=64, in_chans=1, repeats=1)


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
    from explore.nn import MultiHeadSelfAttention

    mhsa = MultiHeadSelfAttention(32, heads=2, qk_dim=8, v_dim=16, table_side=4)
    n = 4 * 4
    qkv = 32 * 2 * (8 + 8 + 16) * n
    attention = 2 * n * n * (8 + 16)  # Q K^T and A V per head, through scaled_dot_product_attention
    proj = (2 * 16) * 32 * n
    assert count_macs(mhsa, img_size=4, in_chans=32) == qkv + attention + proj


def _grid_frame() -> pd.DataFrame:
    """COMPLETE trials on a 7 x 7 grid over the whole plot, the lower-left corner Pareto-optimal."""
    rows = []
    for i in range(7):
        for j in range(7):
            rows.append({"number": 7 * i + j, "state": "COMPLETE", "latency_ms": 1.0 + i, "top1": 50.0 + 5 * j,
                         "pareto": i == 0 and j == 6})
    return pd.DataFrame(rows)


def test_pareto_legend_hides_no_point():
    import matplotlib.pyplot as plt

    fig = pareto_figure(_grid_frame(), "t", "latency (ms)")
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)]
        assert len(legends) == 1
        box = legends[0].get_window_extent(renderer)
        assert fig.bbox.contains(box.x0, box.y0) and fig.bbox.contains(box.x1, box.y1)  # not cut off
        ax = fig.axes[0]
        points = [ax.transData.transform(xy) for coll in ax.collections for xy in coll.get_offsets()]
        assert len(points) == 49
        radius = 8.0  # pixels: the largest marker (s=40 pt^2 at 120 dpi) is about 5 px across its radius
        overlapping = [tuple(xy) for xy in points if box.padded(radius).contains(*xy)]
        assert overlapping == []
    finally:
        plt.close(fig)


def test_latency_label_says_what_was_timed(tmp_path, monkeypatch):
    frame = _frame()
    per_batch = frame["latency_ms"] * 16
    frame = frame.assign(latency_protocol_name="cpu-latency", latency_batch_size=16, latency_protocol_mode="fused",
                         latency_protocol_device="cpu", latency_median_ms=per_batch,
                         latency_ms_per_img=frame["latency_ms"], latency_device_name="Some CPU")
    settings = {"dataset": "fashion_mnist", "device": "cpu", "latency_batch": None, "latency_mode": "fused",
                "latency_threads": 1, "latency_repeats": 20}
    assert latency_description(frame, settings) == ("ms/img", "cpu-latency, batch 16, fused, cpu")
    # a study whose objective is the batch's median (before latency became ms per image)
    assert latency_description(frame.assign(latency_ms=per_batch), settings)[0] == "ms per batch"
    # trials without the attributes: the study's settings
    assert latency_description(_frame(), settings) == ("ms", "cpu-latency, batch the protocol's, fused, cpu")
    import explore.report.study

    labels = []
    monkeypatch.setattr(explore.report.study, "plot_pareto",
                        lambda frame, path, title, label, metric: labels.append((label, metric)))
    paths = write_report(frame, tmp_path / "r", {"study_name": "s", "settings": settings}, "explore report runs/s")
    assert labels == [("latency (ms/img; cpu-latency, batch 16, fused, cpu)", "top-1 (%)")]
    text = paths.markdown.read_text()
    assert "- latency (ms/img; cpu-latency, batch 16, fused, cpu): threads 1, median of 20 runs" in text
    assert "default" not in text and "(Some CPU)" in text


def test_sig3_shows_gpu_latencies_with_three_significant_figures():
    """A GPU's ms/img at batch 2048 is ~0.002: `:.3f` showed 0.002 or 0.000."""
    from explore.report.common import sig3

    assert [sig3(v) for v in (0.0021349, 0.000012345, 1.2345, 123.45)] == ["0.00213", "0.0000123", "1.23", "123"]
    assert sig3(0) == "0" and sig3(None) == "nan" and sig3(float("nan")) == "nan"


def test_trial_line_shows_a_gpu_latency_with_three_significant_figures():
    import optuna

    from explore.cli.study import trial_line
    from explore.search import StudySettings

    study = optuna.create_study()
    trial = study.ask()
    trial.set_user_attr("latency_ms_per_img", 0.0000431)
    study.tell(trial, 71.5)
    line = trial_line(StudySettings(device="cpu"), study, study.get_trials()[0])
    assert "latency 0.0000431 ms/img" in line
