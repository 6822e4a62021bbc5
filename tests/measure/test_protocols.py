"""Measurement protocols, BN fusion and `explore bench` (CPU; GPU parts skip without CUDA)."""

from __future__ import annotations

import copy

import pandas as pd
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from explore.cli import app
from explore.arch import ArchConfig, StageConfig
from explore.errors import DeviceError, ExploreError
from explore.nn import build
from explore.measure import fuse_batchnorm
from explore.measure import PROTOCOLS, get_protocol, measure, peak_memory_mib

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")


def _config(layout: str, kind: str) -> ArchConfig:
    stage = dict(heads=2, qk_dim=8, kernels=(3, 5), window_size=4, scales=(3,), token_mixer=kind)
    stages = tuple(StageConfig(width=w, depth=1, **stage) for w in (16, 32, 48))
    extra = dict(stem_width=8, stem_depth=1, head_widths=(32, 40)) if layout == "mbconv" else {}
    return ArchConfig(stages=stages, img_size=64, in_chans=3, num_classes=5, layout=layout, **extra)


def _randomise_bn(model: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.weight.data = torch.rand(m.weight.shape, generator=g) + 0.5
            m.bias.data = torch.randn(m.bias.shape, generator=g) * 0.1
            m.running_mean = torch.randn(m.running_mean.shape, generator=g) * 0.1
            m.running_var = torch.rand(m.running_var.shape, generator=g) + 0.5
    return model


@pytest.mark.parametrize("layout", ["sandwich", "mbconv"])
@pytest.mark.parametrize("kind", ["cga", "mhsa", "linear", "msla", "none"])
def test_fuse_keeps_outputs_for_every_attention_kind(layout, kind):
    model = _randomise_bn(build(_config(layout, kind))).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        fused = fuse_batchnorm(copy.deepcopy(model))
        got = fused(x)
    assert not any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in fused.modules())
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    for dtype in (torch.bfloat16, torch.float16):
        with torch.no_grad(), torch.autocast("cpu", dtype=dtype):
            assert torch.isfinite(fused(x)).all()


def test_fuse_keeps_device_and_dtype():
    model = fuse_batchnorm(build(_config("sandwich", "cga")).double())
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    assert model(torch.randn(1, 3, 64, 64, dtype=torch.float64)).shape == (1, 5)


@needs_cuda
def test_fuse_on_gpu_model():
    model = _randomise_bn(build(_config("mbconv", "msla"))).eval().cuda()
    x = torch.randn(2, 3, 64, 64, device="cuda")
    with torch.no_grad():
        expected = model(x)
        got = fuse_batchnorm(copy.deepcopy(model))(x)
    assert got.device.type == "cuda"
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_protocol_defaults_follow_the_papers():
    assert PROTOCOLS["gpu-throughput"].batch_size == 2048 and PROTOCOLS["gpu-throughput"].amp == "fp16"
    assert PROTOCOLS["gpu-throughput"].channels_last
    assert PROTOCOLS["cpu-latency"].batch_size == 16 and PROTOCOLS["cpu-latency"].threads == 1
    assert PROTOCOLS["onnx-cpu"].onnx and PROTOCOLS["onnx-cpu"].threads == 1
    assert PROTOCOLS["gpu-latency"].batch_size == 1


@pytest.mark.parametrize(
    "name, overrides, field",
    [
        ("nope", {}, "--protocol"),
        ("cpu-latency", {"mode": "jit"}, "--mode"),
        ("cpu-latency", {"mode": "cuda-graph"}, "--mode"),
        ("onnx-cpu", {"mode": "compile"}, "--mode"),
        ("cpu-latency", {"repeats": 1}, "--repeats"),
        ("cpu-latency", {"batch_size": 0}, "--batch-size"),
    ],
)
def test_bad_protocol_input(name, overrides, field):
    with pytest.raises(ExploreError) as info:
        get_protocol(name, **overrides)
    assert info.value.field == field


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_gpu_protocols_need_cuda():
    model = build(_config("sandwich", "cga"))
    with pytest.raises(DeviceError, match="CUDA is not available"):
        measure(model, get_protocol("gpu-throughput", img_size=64))
    with pytest.raises(DeviceError):
        peak_memory_mib(model, get_protocol("cpu-latency"))


@pytest.mark.parametrize("protocol, mode", [("cpu-latency", "eager"), ("cpu-latency", "fused"), ("onnx-cpu", "fused")])
def test_cpu_protocols_measure_and_record_parameters(protocol, mode):
    model = build(_config("mbconv", "msla"))
    result = measure(model, get_protocol(protocol, img_size=64, batch_size=4, repeats=3, warmup=1, mode=mode))
    assert result.median_ms > 0 and result.iqr_ms >= 0 and result.cv >= 0
    assert result.batch_size == 4 and result.protocol["mode"] == mode and result.protocol["name"] == protocol
    assert result.host_bound is None and result.oom_retries == 0
    assert "torch" in result.versions and (("onnxruntime" in result.versions) == (protocol == "onnx-cpu"))
    attrs = result.as_attrs()
    assert attrs["latency_protocol_name"] == protocol and attrs["latency_median_ms"] == result.median_ms
    assert model.training  # the model itself is untouched (a copy was fused)


def test_compile_mode_on_cpu():
    tiny = ArchConfig(stages=(StageConfig(width=16, depth=1, heads=2, qk_dim=4, kernels=(3, 3)),), img_size=32,
                      in_chans=3, num_classes=3)
    result = measure(build(tiny), get_protocol("cpu-latency", img_size=32, batch_size=2, repeats=3, warmup=2,
                                               mode="compile"))
    assert result.median_ms > 0 and result.protocol["mode"] == "compile"


class _OomAbove(nn.Module):
    """Raises CUDA's out-of-memory error for batches above a limit (simulates a GPU that is too small)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        if x.shape[0] > self.limit:
            raise torch.cuda.OutOfMemoryError("simulated")
        return self.fc(x.mean((2, 3)))


def test_out_of_memory_halves_the_batch():
    result = measure(_OomAbove(4), get_protocol("cpu-latency", img_size=8, batch_size=16, repeats=3, warmup=1))
    assert result.batch_size == 4 and result.oom_retries == 2
    with pytest.raises(ExploreError, match="batch 1"):
        measure(_OomAbove(0), get_protocol("cpu-latency", img_size=8, batch_size=2, repeats=3, warmup=1))


def test_bench_cli_small(tmp_path):
    pytest.importorskip("timm", reason="the bench compares with timm (extra 'test')")
    result = CliRunner().invoke(app, ["bench", "--device", "cpu", "--models", "efficientvit_m0,efficientvit_b0",
                                      "--modes", "eager,fused", "--repeats", "3", "--warmup", "1", "--img-size", "64",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    csv = next(tmp_path.glob("bench_cpu-latency_*.csv"))
    frame = pd.read_csv(csv)
    assert len(frame) == 4 and frame["ratio_ours_timm"].gt(0).all()
    assert set(frame["mode"]) == {"eager", "fused"}
    assert "explore bench" in csv.with_suffix(".md").read_text()
    bad = CliRunner().invoke(app, ["bench", "--models", "efficientvit_x9"])
    assert bad.exit_code == 1 and "--models" in bad.output
    bad = CliRunner().invoke(app, ["bench", "--models", "efficientvit_m0", "--compile-backend", "tvm",
                                   "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 1 and "--compile-backend" in bad.output and not (tmp_path / "bad").exists()


def test_bench_compile_rows_name_their_backend(monkeypatch):
    """``--compile-backend eager`` (what the CPU acceptance run uses) still compiles through dynamo:
    the rows count their graphs and say which backend made them; the command line keeps the option."""
    import explore.analysis.bench.models as bm

    tiny = ArchConfig(stages=(StageConfig(width=16, depth=1, heads=2, qk_dim=4, kernels=(3, 3)),), img_size=32,
                      in_chans=3, num_classes=3)
    monkeypatch.setitem(bm.PRESETS, "tiny_m", tiny)  # a dict of ours, not a library module
    frame = bm.bench(["tiny_m"], "cpu-latency", ("eager", "compile"), batch_size=2, repeats=2, warmup=1,
                     img_size=32, reference=False, compile_backend="eager")
    rows = frame.set_index("mode")
    assert rows.loc["compile", "compile_backend"] == "eager" and rows.loc["compile", "ours_graphs"] >= 1
    assert pd.isna(rows.loc["eager", "compile_backend"])


def test_study_measures_compiled_latency(tmp_path):
    from explore.search import open_study, run_study, trials_frame
    from tests.study_helpers import tiny_settings

    settings = tiny_settings(tmp_path, trials=1, latency_mode="compile")
    assert run_study(settings).complete == 1
    frame = trials_frame(open_study(str(settings.run_dir)))
    done = frame[frame["state"] == "COMPLETE"].iloc[0]
    assert done["latency_protocol_mode"] == "compile" and done["latency_protocol_name"] == "cpu-latency"
    assert done["latency_median_ms"] > 0
    with pytest.raises(ExploreError, match="--latency-mode"):  # the study's option, not the protocol's --mode
        tiny_settings(tmp_path, latency_mode="cuda-graph").validate()
