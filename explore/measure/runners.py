"""How one forward pass is run and timed on CUDA, and peak GPU memory.

A :class:`Runner` is one forward pass in a protocol's mode: ``eager``, ``fused`` (BN folded),
``compile`` (``torch.compile`` through a :class:`GraphCounter`) or ``cuda-graph`` (capture and
replay). :func:`time_cuda` times runners with CUDA events and tells, by :func:`launch_diagnosis`
and :func:`host_bound_rule`, whether the host's kernel launches were the bottleneck.
:mod:`explore.measure.protocols` drives them.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from explore.device import on_device, resolve_device
from explore.errors import DeviceError
from explore.measure.fusion import fuse_batchnorm

if TYPE_CHECKING:
    from explore.measure.protocols import Protocol

__all__ = ["HOST_BOUND_RATIO", "PAIR_TARGET_MS", "MAX_PASSES", "GraphCounter", "Runner", "CudaTiming",
           "prepare_runner", "cast_for_amp", "host_bound_rule", "launch_diagnosis", "passes_per_pair", "time_cuda",
           "peak_memory_mib", "amp_dtype", "compile_budget", "forget_runner", "clear_compiled"]

HOST_BOUND_RATIO = 0.8
"""A CUDA forward pass is host-bound when queueing it takes >= this share of its GPU time."""
PAIR_TARGET_MS = 2.0
"""GPU time one pair of CUDA events spans at least (ms): passes shorter than this are timed several per
pair, so that the event pair's own resolution and the first launch weigh little in the figure per pass."""
MAX_PASSES = 64
"""The most forward passes timed between one pair of CUDA events."""

_CAST_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


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
    ``compile``: ``counter`` counts the graphs and calls of the model's compiled forward since it
    was first compiled, ``calls_before`` its calls before this runner was handed out (the calls of
    this measurement are ``counter.calls - calls_before``), and ``reused`` says whether the
    compiled forward came from the process's cache (:func:`prepare_runner`: nothing compiled again).
    """

    run: Callable[[], Any]
    keep: tuple[Any, ...]
    counter: GraphCounter | None = None
    calls_before: int = 0
    reused: bool = False


@dataclass
class _Compiled:
    """A model's compiled forward kept for later measurements of the same model (:func:`prepare_runner`)."""

    model: weakref.ReferenceType[nn.Module]
    net: nn.Module
    compiled: Callable[..., Any]
    counter: GraphCounter


_COMPILED: OrderedDict[tuple[Any, ...], _Compiled] = OrderedDict()
"""The compiled forwards prepared since dynamo's last reset, least recently used first."""
_COMPILED_SINCE_RESET = [0]
"""Models compiled since :func:`prepare_runner` last reset dynamo (each adds one cache entry to the shared
``forward``; forgotten ones too, their entries stay with dynamo until the reset)."""


def compile_budget() -> int:
    """Compiled forwards one code object may hold before ``compile`` mode resets dynamo:
    ``torch._dynamo.config.recompile_limit`` - 1 (at least 1).

    Every generated model shares one ``forward``, and each compiled model adds one entry to that code's
    dynamo cache; past the limit dynamo runs the frame eagerly. The one entry spare absorbs a model that
    recompiled once; a measurement that ran eagerly anyway is refused (:func:`explore.measure.measure`).

    Returns:
        The number of compiled entries (models) per dynamo generation.
    """
    return max(1, int(torch._dynamo.config.recompile_limit) - 1)


def _dynamo_entries(model: nn.Module) -> int:
    """Entries in dynamo's cache of ``type(model).forward`` (0 where torch does not tell): they count
    compiles this module did not make, e.g. the proxy loop's ``torch.compile`` of a trained model."""
    try:
        from torch._dynamo.eval_frame import _debug_get_cache_entry_list
    except ImportError:  # a private helper: without it, the models counted here decide alone
        return 0
    code = getattr(getattr(type(model), "forward", None), "__code__", None)
    return len(_debug_get_cache_entry_list(code)) if code is not None else 0


def _structure(model: nn.Module) -> tuple[Any, ...]:
    """What a cached compiled forward must still match: the model's class and its tensors' names, shapes
    and dtypes (a model whose layers were replaced or resized since is compiled again)."""
    tensors = tuple((name, tuple(t.shape), t.dtype) for name, t in model.state_dict().items())
    return (type(model).__qualname__, *tensors)


def _compile_key(model: nn.Module, protocol: Protocol, device: torch.device, x: torch.Tensor) -> tuple[Any, ...]:
    fields = tuple(sorted((k, v) for k, v in protocol.key().items()
                          if k not in ("name", "warmup", "repeats", "figure", "batch_size", "reference_img_size",
                                       "reference_in_chans")))
    return (id(model), _structure(model), fields, str(device), tuple(x.shape), x.stride(), x.dtype)


def forget_runner(runner: Runner) -> None:
    """Drop a ``compile`` runner's model from the process's cache (after its measurement failed, e.g. out
    of memory: a batch that did not fit is not measured again, and its copy of the model is freed).

    Args:
        runner: from :func:`prepare_runner` (other modes: nothing to drop).
    """
    for key, entry in list(_COMPILED.items()):
        if entry.counter is runner.counter:
            del _COMPILED[key]


def clear_compiled() -> None:
    """Forget every cached compiled forward and reset dynamo (the next ``compile`` measurement compiles)."""
    _COMPILED.clear()
    _COMPILED_SINCE_RESET[0] = 0
    torch._dynamo.reset()


def cast_for_amp(net: nn.Module, dtype: torch.dtype | None) -> nn.Module:
    """Cast, once and in place, what autocast would otherwise cast in every forward pass.

    Under autocast a float32 conv or linear layer casts its weight and bias to the autocast dtype on
    every call (about two extra kernels per layer and pass, captured into CUDA graphs too), which
    weighs more on architectures with more layers. This casts the weights and biases of every
    ``Conv1d/2d/3d`` and ``Linear``, and the relative-position bias tables of the attention mixers
    (``attention_biases``, ours and timm's; their per-grid caches are dropped), to ``dtype``; norms (BatchNorm,
    LayerNorm, GroupNorm: what fusion left) keep float32 parameters, and autocast still runs them
    and the other fp32-listed ops (softmax, ...) in float32. Autocast skips a cast whose tensor
    already has the target dtype, so the timed pass launches no parameter casts.

    Args:
        net: the model to time (a copy: it is changed).
        dtype: the autocast dtype (``torch.float16``, ``torch.bfloat16``), or None (nothing cast).

    Returns:
        ``net``.
    """
    if dtype is None:
        return net
    for module in net.modules():
        if isinstance(module, _CAST_MODULES):
            module.to(dtype)
        table = getattr(module, "attention_biases", None)
        if isinstance(table, nn.Parameter):
            table.data = table.data.to(dtype)
            for cache in ("_bias_cache", "attention_bias_cache"):  # ours; timm's LeViT-style mixers
                if isinstance(getattr(module, cache, None), dict):
                    setattr(module, cache, {})
    return net


def prepare_runner(model: nn.Module, protocol: Protocol, device: torch.device, x: torch.Tensor) -> Runner:
    """The runner of one forward pass of ``x`` in the protocol's mode.

    Every mode first runs the (fused) copy once eagerly, so that the attention-bias caches of
    :mod:`explore.nn.attention` are filled before ``torch.compile`` traces or a CUDA graph is
    captured: a cache written inside a traced forward would make dynamo guard on it and compile
    each model twice. With ``amp``, conv and linear parameters are cast once (:func:`cast_for_amp`),
    not by autocast in every timed pass.

    ``compile`` keeps, per process, the compiled forward of each model it prepared since dynamo's last
    reset, keyed by the model object (held weakly), its structure (class, tensor names, shapes and
    dtypes), the protocol's fields that change the compiled code (device, ``amp``, ``channels_last``,
    mode, backend, threads) and the input's shape, strides and dtype. Measuring the same model again
    (the rounds of :func:`explore.measure.time_rounds`, the end-of-study re-measurement) reuses it:
    nothing is reset or compiled again, and ``x`` is passed to the compiled forward, which guards on
    its shape, not its storage. A model not in the cache is compiled; before that, once
    :func:`compile_budget` models were compiled here since the last reset, or the model's ``forward``
    holds that many compiled entries (compiles made elsewhere, e.g. the proxy loop's, count too),
    dynamo is reset and the cache emptied, so that the compiled forwards of earlier models (every
    generated model shares one ``forward``) never reach the recompile limit, after which dynamo
    silently runs eager. The cache therefore holds at most :func:`compile_budget` models (their fused
    copies, not their inputs). A
    reused forward times the model's weights as they were when it was first prepared (latency
    depends on the architecture and the protocol, not on weight values).

    Args:
        model: the model to time (copied: not changed; ``compile`` keeps a weak reference to it).
        protocol: the protocol (mode, precision, memory format, compile backend).
        device: its device, resolved.
        x: the timed input (B, C, H, W), from :func:`explore.measure.protocols.make_input`.

    Returns:
        :class:`Runner`.
    """
    if protocol.mode == "compile":
        key = _compile_key(model, protocol, device, x)
        entry = _COMPILED.get(key)
        if entry is not None and entry.model() is model:
            _COMPILED.move_to_end(key)
            return _compiled_runner(entry, protocol, device, x, reused=True)
        if max(_COMPILED_SINCE_RESET[0], _dynamo_entries(model)) >= compile_budget():
            clear_compiled()
    net = copy.deepcopy(model).eval()
    if protocol.mode != "eager":
        fuse_batchnorm(net)
    net = net.to(device)
    if protocol.channels_last:
        net = net.to(memory_format=torch.channels_last)
    amp = amp_dtype(protocol.amp)
    cast_for_amp(net, amp)

    def autocast() -> Any:
        return torch.autocast(device.type, dtype=amp, enabled=amp is not None)

    with torch.inference_mode(), autocast():
        net(x)  # fills the per-shape caches outside any trace or capture
    if protocol.mode == "compile":
        counter = GraphCounter(protocol.compile_backend)
        entry = _Compiled(weakref.ref(model), net, torch.compile(net, backend=counter), counter)
        _COMPILED[key] = entry
        _COMPILED_SINCE_RESET[0] += 1
        return _compiled_runner(entry, protocol, device, x, reused=False)
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


def _compiled_runner(entry: _Compiled, protocol: Protocol, device: torch.device, x: torch.Tensor,
                     reused: bool) -> Runner:
    amp = amp_dtype(protocol.amp)
    compiled = entry.compiled

    def forward_compiled() -> Any:
        with torch.inference_mode(), torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            return compiled(x)

    return Runner(forward_compiled, (entry.net, compiled, x), entry.counter, entry.counter.calls, reused)


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


def _sleep_cycles_per_ms() -> float:
    """Cycles of ``torch.cuda._sleep`` per ms on the current device (one probe)."""
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    probe = 1_000_000
    start.record()
    torch.cuda._sleep(probe)
    stop.record()
    stop.synchronize()
    return probe / max(start.elapsed_time(stop), 1e-3)


_DIAGNOSIS_REPEATS = 5


def launch_diagnosis(run: Callable[[], Any], device: torch.device, busy_ms: float,
                      repeats: int = _DIAGNOSIS_REPEATS, cycles_per_ms: float | None = None) -> tuple[float | None, float | None]:
    """(host ms to queue one pass, GPU ms to run it) with the GPU kept busy while the host queues.

    Before each pass the GPU is given ``torch.cuda._sleep`` for about 2 x ``busy_ms`` + 1 ms, so
    the host queues the whole pass without waiting on the GPU; the events around the pass then
    time the GPU's work alone. Returns (None, None) when the host needed longer than the sleep to
    queue (a launch queue that filled up): then neither figure is the one wanted.
    """
    cycles_per_ms = cycles_per_ms or _sleep_cycles_per_ms()
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


def passes_per_pair(pass_ms: float, target_ms: float = PAIR_TARGET_MS, most: int = MAX_PASSES) -> int:
    """Forward passes to time between one pair of CUDA events: enough for ``target_ms`` of GPU time
    (1 for a pass that long or longer), at most ``most``.

    Args:
        pass_ms: an estimate of one pass's GPU time (ms).
        target_ms: GPU time one event pair should span.
        most: cap.
    """
    if not pass_ms > 0:
        return most
    return max(1, min(most, math.ceil(target_ms / pass_ms)))


@dataclass(frozen=True)
class CudaTiming:
    """What :func:`time_cuda` measured.

    Attributes:
        times: GPU ms per forward pass, one figure per timed repeat (an event pair's time / passes).
        host_ms, gpu_exec_ms: :func:`launch_diagnosis` (None when the launch queue filled up).
        passes: forward passes timed between one event pair.
        runs: forward passes run in all (warm-up, diagnosis and timing).
    """

    times: list[float]
    host_ms: float | None
    gpu_exec_ms: float | None
    passes: int
    runs: int


def time_cuda(runner: Runner, protocol: Protocol, device: torch.device) -> CudaTiming:
    """Time a runner's forward pass on CUDA: GPU ms per pass, without the launch latency.

    After ``protocol.warmup`` untimed passes (which also let cuDNN autotune, see
    :func:`explore.measure.measure`) and the :func:`launch_diagnosis`, each of ``protocol.repeats``
    repeats queues :func:`passes_per_pair` passes back to back between one pair of CUDA events,
    behind a short ``torch.cuda._sleep`` that covers the host's queueing of the first pass: the
    first launch is hidden, the passes run as in a steady stream, and the repeat's figure is the
    pair's time / passes. A host-bound pass (the host queues slower than the GPU runs) still shows
    the host's rate, as a stream of such passes would run; ``host_bound`` tells which.
    """
    run = runner.run
    for _ in range(protocol.warmup):
        run()
    torch.cuda.synchronize(device)
    cycles_per_ms = _sleep_cycles_per_ms()
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    run()
    end.record()
    end.synchronize()
    first_ms = begin.elapsed_time(end)  # includes one launch: an upper bound of the pass's GPU time
    host_ms, exec_ms = launch_diagnosis(run, device, first_ms, cycles_per_ms=cycles_per_ms)
    passes = passes_per_pair(exec_ms if exec_ms is not None else first_ms)
    lead_ms = 2.0 * (host_ms if host_ms is not None else first_ms) + 0.05  # the first pass is queued in it
    gpu = []
    for _ in range(protocol.repeats):
        torch.cuda._sleep(int(cycles_per_ms * lead_ms))
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        for _ in range(passes):
            run()
        end.record()
        end.synchronize()
        gpu.append(begin.elapsed_time(end) / passes)
    return CudaTiming(gpu, host_ms, exec_ms, passes, protocol.warmup + 1 + _DIAGNOSIS_REPEATS + protocol.repeats * passes)


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
