"""The CUDA measurement's mechanisms (issue 27), shown on the CPU: parameters cast once under amp,
cuDNN autotuning while measuring, event pairs that hold several passes behind a GPU sleep (a
simulated GPU clock), inputs built on the device, and out-of-memory at batch 1.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from conftest import tiny_config
import explore.measure.protocols as protocols
import explore.measure.runners as runners
from explore.device import is_out_of_memory
from explore.errors import ExploreError, OutOfMemory
from explore.measure import get_protocol, measure
from explore.measure.runners import Runner, passes_per_pair, prepare_runner, time_cuda
from explore.nn import build


class _ParameterCasts(TorchDispatchMode):
    """Counts the dtype casts (``aten.to`` under inference mode, ``aten._to_copy`` below it) whose
    source is one of ``params``' storages."""

    def __init__(self, params: list[torch.Tensor]) -> None:
        super().__init__()
        self.ptrs = {p.data_ptr() for p in params}
        self.casts = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204 - torch's signature
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket in (torch.ops.aten.to, torch.ops.aten._to_copy) and args[0].data_ptr() in self.ptrs \
                and out.dtype != args[0].dtype:
            self.casts += 1
        return out


def _amp_protocol(mode: str = "fused"):
    return get_protocol("cpu-latency", img_size=32, in_chans=1, batch_size=2, repeats=2, warmup=1, amp="bf16",
                        mode=mode)


@pytest.mark.parametrize("mode", ["eager", "fused"])
def test_amp_casts_conv_and_linear_parameters_once_not_per_pass(mode):
    """The timed pass of an amp protocol launches no weight casts: conv/linear weights (and the
    attention-bias tables) are already in the autocast dtype, norms keep fp32."""
    model = build(tiny_config(img_size=32))
    protocol = _amp_protocol(mode)
    x = protocols.make_input(protocol, torch.device("cpu"), 2)
    assert x.dtype == torch.bfloat16
    runner = prepare_runner(model, protocol, torch.device("cpu"), x)
    net = runner.keep[0]
    convs = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert convs and all(m.weight.dtype == torch.bfloat16 for m in convs)
    norms = [m for m in net.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm))]
    assert all(p.dtype == torch.float32 for m in norms for p in m.parameters())
    if mode == "eager":
        assert norms  # BN stays unfused in eager mode, in fp32
    tables = [p for n, p in net.named_parameters() if n.endswith("attention_biases")]
    assert tables and all(t.dtype == torch.bfloat16 for t in tables)
    if mode == "eager":
        return  # the dtypes above are the mechanism; the cast count below is the fused model's
    with _ParameterCasts(list(net.parameters())) as counter:
        runner.run()
    assert counter.casts == 0

    # the counter sees the casts autocast makes of an fp32 model: one per conv/linear weight at least
    plain = build(tiny_config(img_size=32)).eval()
    with _ParameterCasts(list(plain.parameters())) as counter, torch.inference_mode(), \
            torch.autocast("cpu", dtype=torch.bfloat16):
        plain(x.float())
    assert counter.casts >= len([m for m in plain.modules() if isinstance(m, (nn.Conv2d, nn.Linear))])


def test_amp_cast_drops_timm_style_bias_caches():
    class Mixer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attention_biases = nn.Parameter(torch.zeros(2, 9))
            self.attention_bias_cache = {"cpu": torch.zeros(2, 9, 9)}  # filled in fp32 before the cast

    net = runners.cast_for_amp(nn.Sequential(Mixer()), torch.float16)
    assert net[0].attention_biases.dtype == torch.float16 and net[0].attention_bias_cache == {}
    assert runners.cast_for_amp(net, None) is net


def _fake_cuda(monkeypatch, gpu_ms_per_pass: float, launch_ms: float):
    """A simulated GPU: the host spends ``launch_ms`` queueing a pass, the GPU ``gpu_ms_per_pass``
    running it, in stream order after what was queued before; events take the GPU's clock."""
    clock = {"host": 0.0, "gpu": 0.0}
    cycles_per_ms = 1000.0
    pairs = []

    class Event:
        def __init__(self, enable_timing: bool = False) -> None:
            self.t = None

        def record(self) -> None:
            self.t = clock["gpu"] = max(clock["gpu"], clock["host"])

        def synchronize(self) -> None:
            clock["host"] = max(clock["host"], self.t)

        def elapsed_time(self, other: "Event") -> float:
            pairs.append(other.t - self.t)
            return other.t - self.t

    def sleep(cycles: int) -> None:
        clock["gpu"] = max(clock["gpu"], clock["host"]) + cycles / cycles_per_ms

    def synchronize(device=None) -> None:  # noqa: ANN001
        clock["host"] = max(clock["host"], clock["gpu"])

    def run() -> None:
        clock["host"] += launch_ms
        clock["gpu"] = max(clock["gpu"], clock["host"]) + gpu_ms_per_pass

    class Time:
        @staticmethod
        def perf_counter() -> float:
            return clock["host"] / 1e3

    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "_sleep", sleep)
    monkeypatch.setattr(torch.cuda, "synchronize", synchronize)
    monkeypatch.setattr(runners, "time", Time)
    return Runner(run, ()), pairs


@pytest.mark.parametrize("gpu_ms,launch_ms", [(0.2, 0.05), (3.0, 0.05), (0.02, 0.015)])
def test_cuda_figure_is_gpu_time_per_pass_without_the_launch(monkeypatch, gpu_ms, launch_ms):
    """One event pair around one launch reads launch + GPU time; the figure must be the GPU's time
    per pass (several passes per pair for short passes, the first launch hidden behind a sleep)."""
    runner, pairs = _fake_cuda(monkeypatch, gpu_ms, launch_ms)
    protocol = get_protocol("gpu-throughput", repeats=5, warmup=2)
    timing = time_cuda(runner, protocol, torch.device("cuda", 0))
    assert timing.passes == passes_per_pair(gpu_ms)
    assert timing.passes > 1 if gpu_ms < runners.PAIR_TARGET_MS else timing.passes == 1
    assert timing.times == pytest.approx([gpu_ms] * 5, rel=1e-6)
    assert min(pairs[-5:]) >= min(gpu_ms, runners.PAIR_TARGET_MS)  # each pair spans enough GPU time
    assert timing.host_ms == pytest.approx(launch_ms) and timing.gpu_exec_ms == pytest.approx(gpu_ms)
    assert timing.runs == protocol.warmup + 1 + 5 + 5 * timing.passes


def test_host_bound_pass_shows_the_hosts_rate(monkeypatch):
    """A pass the host queues slower than the GPU runs it: a stream of them runs at the host's rate."""
    runner, _ = _fake_cuda(monkeypatch, gpu_ms_per_pass=0.1, launch_ms=0.3)
    timing = time_cuda(runner, get_protocol("gpu-latency", repeats=4, warmup=1), torch.device("cuda", 0))
    assert timing.times == pytest.approx([0.3] * 4, rel=0.1)  # less the first launches, hidden
    assert runners.host_bound_rule(timing.host_ms, timing.gpu_exec_ms)


def test_passes_per_pair():
    assert passes_per_pair(0.5) == 4 and passes_per_pair(5.0) == 1 and passes_per_pair(1e-6) == runners.MAX_PASSES
    assert passes_per_pair(0.0) == runners.MAX_PASSES


def _as_cuda(monkeypatch):
    """``measure`` on a pretend CUDA device (the timing itself faked by the test)."""
    monkeypatch.setattr(protocols, "resolve_device", lambda device: torch.device("cuda", 0))
    monkeypatch.setattr(protocols, "on_device", lambda device: contextlib.nullcontext())
    monkeypatch.setattr(protocols, "device_name", lambda device: "Fake GPU")


def test_measure_autotunes_cudnn_on_cuda_and_restores_the_setting(monkeypatch):
    _as_cuda(monkeypatch)
    seen = []

    def fake(model, protocol, device, batch):
        seen.append(torch.backends.cudnn.benchmark)
        return protocols.Timed([1.0, 1.0, 1.1], passes=3)

    monkeypatch.setattr(protocols, "measure_batch", fake)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    result = measure(nn.Identity(), get_protocol("gpu-throughput", repeats=3))
    assert seen == [True] and torch.backends.cudnn.benchmark is False
    assert result.passes_per_pair == 3 and result.gpu_ms == pytest.approx(1.0)
    monkeypatch.setattr(protocols, "resolve_device", lambda device: torch.device("cpu"))
    measure(nn.Identity(), get_protocol("cpu-latency", repeats=3))
    assert seen[-1] is False  # the CPU is left as it is


def test_input_is_built_on_the_device_in_the_protocols_precision_and_layout(monkeypatch):
    built = []
    real_empty = torch.empty

    def empty(*shape, device=None, dtype=None, memory_format=torch.contiguous_format):  # noqa: ANN001
        built.append((device, dtype, memory_format))
        return real_empty(*shape, dtype=dtype, memory_format=memory_format)  # (the CPU stands in for the GPU)

    monkeypatch.setattr(torch, "empty", empty)
    monkeypatch.setattr(torch, "randn", lambda *a, **k: pytest.fail("the input was built on the host"))
    x = protocols.make_input(get_protocol("gpu-throughput", img_size=8), torch.device("cuda", 0), 4)
    assert built == [(torch.device("cuda", 0), torch.float16, torch.channels_last)]
    assert x.shape == (4, 3, 8, 8) and x.is_contiguous(memory_format=torch.channels_last)


def test_out_of_memory_at_batch_one_is_an_out_of_memory(monkeypatch):
    """The same fault as any other out-of-memory (a study prunes it), and one clear error line for a command."""
    def fake(model, protocol, device, batch):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(protocols, "measure_batch", fake)
    with pytest.raises(OutOfMemory, match="batch 1") as info:
        measure(nn.Identity(), get_protocol("cpu-latency", batch_size=2, repeats=3))
    assert is_out_of_memory(info.value) and isinstance(info.value, ExploreError)
    assert "Tried to allocate" in str(info.value)
