"""How one forward pass is run and timed on CUDA, and peak GPU memory.

A :class:`Runner` is one forward pass in a protocol's mode: ``eager``, ``fused`` (BN folded),
``compile`` (``torch.compile`` through a :class:`GraphCounter`) or ``cuda-graph`` (capture and
replay). :func:`time_cuda` times runners with CUDA events and tells, by :func:`launch_diagnosis`
and :func:`host_bound_rule`, whether the host's kernel launches were the bottleneck.
:mod:`explore.measure.protocols` drives them.
"""

from __future__ import annotations

import copy
import statistics
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from explore.device import on_device, resolve_device
from explore.errors import DeviceError
from explore.measure.fusion import fuse_batchnorm

if TYPE_CHECKING:
    from explore.measure.protocols import Protocol

__all__ = ["HOST_BOUND_RATIO", "GraphCounter", "Runner", "prepare_runner", "host_bound_rule", "launch_diagnosis",
           "time_cuda", "peak_memory_mib", "amp_dtype"]

HOST_BOUND_RATIO = 0.8
"""A CUDA forward pass is host-bound when queueing it takes >= this share of its GPU time."""


def amp_dtype(amp: str | None) -> torch.dtype | None:
    """The autocast dtype of a protocol's ``amp`` (``fp16``, ``bf16``), or None for fp32."""
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(amp or "")


class GraphCounter:
    """A ``torch.compile`` backend that wraps another one and counts what it compiled and ran.

    ``graphs`` counts the FX graphs dynamo handed to the backend (one per compiled region; more
    than one means graph breaks or recompilations); ``calls`` counts executions of compiled
    graphs. A forward pass that dynamo ran eagerly (e.g. after ``config.recompile_limit`` was
    hit) adds no call, so ``calls`` tells whether a measurement labelled ``compile`` really ran
    compiled code.

    Args:
        backend: the wrapped backend's name (``inductor``; ``eager`` or ``aot_eager`` in tests).
    """

    def __init__(self, backend: str = "inductor") -> None:
        from torch._dynamo.backends.registry import lookup_backend

        self.backend = backend
        self._inner = lookup_backend(backend)
        self.graphs = 0
        self.calls = 0

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> Callable[..., Any]:
        self.graphs += 1
        compiled = self._inner(gm, example_inputs)

        def run(*args: Any) -> Any:
            self.calls += 1
            return compiled(*args)

        return run


@dataclass
class Runner:
    """One forward pass of the protocol's input, and everything that pass needs kept alive.

    ``keep`` holds the model, the static input and, for ``cuda-graph``, the graph: a replayed
    graph reads and writes the memory of those tensors, which must outlive the timing loop.
    """

    run: Callable[[], Any]
    keep: tuple[Any, ...]
    counter: GraphCounter | None = None


def prepare_runner(model: nn.Module, protocol: Protocol, device: torch.device, x: torch.Tensor) -> Runner:
    """The runner of one forward pass of ``x`` in the protocol's mode.

    Every mode first runs the (fused) copy once eagerly, so that the attention-bias caches of
    :mod:`explore.nn.attention` are filled before ``torch.compile`` traces or a CUDA graph is
    captured: a cache written inside a traced forward would make dynamo guard on it and compile
    each model twice. ``compile`` resets dynamo first, so that the compiled forwards of earlier
    models (every generated model shares one ``forward``) do not count towards the recompile
    limit, after which dynamo silently runs eager.
    """
    net = copy.deepcopy(model).eval()
    if protocol.mode != "eager":
        fuse_batchnorm(net)
    net = net.to(device)
    if protocol.channels_last:
        net = net.to(memory_format=torch.channels_last)
    amp = amp_dtype(protocol.amp)

    def autocast() -> Any:
        return torch.autocast(device.type, dtype=amp, enabled=amp is not None)

    with torch.inference_mode(), autocast():
        net(x)  # fills the per-shape caches outside any trace or capture
    if protocol.mode == "compile":
        torch._dynamo.reset()
        counter = GraphCounter(protocol.compile_backend)
        compiled = torch.compile(net, backend=counter)

        def forward_compiled() -> Any:
            with torch.inference_mode(), autocast():
                return compiled(x)

        return Runner(forward_compiled, (net, compiled, x), counter)
    if protocol.mode == "cuda-graph":
        static_x = x.clone()
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream), torch.inference_mode(), autocast():
            for _ in range(3):  # warm-up on a side stream before capture
                net(static_x)
        torch.cuda.current_stream(device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), autocast(), torch.cuda.graph(graph):
            static_out = net(static_x)
        return Runner(graph.replay, (net, static_x, static_out, graph))

    def forward() -> Any:
        with torch.inference_mode(), autocast():
            return net(x)

    return Runner(forward, (net, x))


def host_bound_rule(host_ms: float, gpu_exec_ms: float, ratio: float = HOST_BOUND_RATIO) -> bool:
    """Whether a forward pass is limited by the host: queueing it takes the host at least
    ``ratio`` x the time the GPU needs to run it.

    Both figures must come from :func:`launch_diagnosis` (the host's queueing time measured
    while the GPU is still busy with earlier work, so that the host never waits for the GPU, and
    the GPU's time for the queued work alone). Host and GPU time of a plain back-to-back loop
    cannot tell: when the launch queue is full the host blocks until the GPU frees a slot, and
    its time equals the GPU's whichever side is the bottleneck.

    Args:
        host_ms: median host time to queue one forward pass (ms).
        gpu_exec_ms: median GPU time of that queued pass (ms).
        ratio: threshold.

    Returns:
        True when the host is the bottleneck (the measured figure is the host's launch rate).
    """
    return host_ms >= ratio * gpu_exec_ms


def launch_diagnosis(run: Callable[[], Any], device: torch.device, busy_ms: float,
                      repeats: int = 5) -> tuple[float | None, float | None]:
    """(host ms to queue one pass, GPU ms to run it) with the GPU kept busy while the host queues.

    Before each pass the GPU is given ``torch.cuda._sleep`` for about 2 x ``busy_ms`` + 1 ms, so
    the host queues the whole pass without waiting on the GPU; the events around the pass then
    time the GPU's work alone. Returns (None, None) when the host needed longer than the sleep to
    queue (a launch queue that filled up): then neither figure is the one wanted.
    """
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    probe = 1_000_000
    start.record()
    torch.cuda._sleep(probe)
    stop.record()
    stop.synchronize()
    cycles_per_ms = probe / max(start.elapsed_time(stop), 1e-3)
    sleep_ms = 2.0 * busy_ms + 1.0
    host, gpu = [], []
    for _ in range(repeats):
        torch.cuda._sleep(int(cycles_per_ms * sleep_ms))
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        t0 = time.perf_counter()
        run()
        host.append((time.perf_counter() - t0) * 1e3)
        end.record()
        end.synchronize()
        gpu.append(begin.elapsed_time(end))
    host_ms = statistics.median(host)
    if host_ms >= 0.9 * sleep_ms:
        return None, None
    return host_ms, statistics.median(gpu)


def time_cuda(runner: Runner, protocol: Protocol, device: torch.device) -> tuple[list[float], float | None,
                                                                                      float | None]:
    """CUDA: (ms per run from CUDA events; host queueing ms; GPU execution ms; see :func:`launch_diagnosis`)."""
    run = runner.run
    for _ in range(protocol.warmup):
        run()
    torch.cuda.synchronize(device)
    gpu = []
    for _ in range(protocol.repeats):
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        run()
        end.record()
        end.synchronize()
        gpu.append(begin.elapsed_time(end))
    host_ms, exec_ms = launch_diagnosis(run, device, statistics.median(gpu))
    return gpu, host_ms, exec_ms


# --------------------------------------------------------------------------------------------------
# contention on a shared CPU


def peak_memory_mib(model: nn.Module, protocol: Protocol) -> dict[str, float]:
    """Peak GPU memory (MiB) of one inference pass and of one training step (forward, backward,
    SGD update) at the protocol's batch, precision and memory format.

    Raises:
        DeviceError: the protocol's device is not CUDA.
    """
    device = resolve_device(protocol.device)
    if device.type != "cuda":
        raise DeviceError("--device", protocol.device, "peak GPU memory needs a CUDA device")
    with on_device(device):
        return _peak_memory(model, protocol, device)


def _peak_memory(model: nn.Module, protocol: Protocol, device: torch.device) -> dict[str, float]:
    amp = amp_dtype(protocol.amp)
    result = {}
    for phase in ("inference", "train_step"):
        net = copy.deepcopy(model).to(device)
        if protocol.channels_last:
            net = net.to(memory_format=torch.channels_last)
        x = torch.randn(protocol.batch_size, protocol.in_chans, protocol.img_size, protocol.img_width or protocol.img_size,
                        device=device)
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        if phase == "inference":
            net.eval()
            with torch.inference_mode(), torch.autocast("cuda", dtype=amp, enabled=amp is not None):
                net(x)
        else:
            net.train()
            optimizer = torch.optim.SGD(net.parameters(), lr=0.0)
            with torch.autocast("cuda", dtype=amp, enabled=amp is not None):
                loss = net(x).float().logsumexp(-1).mean()
            loss.backward()
            optimizer.step()
        torch.cuda.synchronize(device)
        result[f"{phase}_mib"] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        del net, x
    return result
