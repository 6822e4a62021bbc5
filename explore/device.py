"""Device selection, device context, out-of-memory detection and the per-device measurement lock.

One place that turns a ``--device`` string into a ``torch.device`` or a clear error, makes that
device current for CUDA work (:func:`on_device`), recognises every flavour of out-of-memory error
(:func:`is_out_of_memory`) and frees memory after one (:func:`release_memory`), and keeps latency
measurement apart from training on the same device (:func:`device_lock`).
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import os
import re
import tempfile
from collections.abc import Iterator

import torch

from explore.errors import DeviceError, ExploreError

__all__ = ["resolve_device", "on_device", "is_out_of_memory", "is_sticky_cuda_error", "release_memory", "device_lock",
           "lock_path", "lock_dir", "LOCK_DIR_ENV"]

LOCK_DIR_ENV = "EXPLORE_LOCK_DIR"
"""Environment variable naming the folder of the device locks (default: the temporary folder)."""

_OOM_PATTERNS = re.compile(
    r"out of memory|CUDNN_STATUS_ALLOC_FAILED|CUBLAS_STATUS_ALLOC_FAILED|CUBLAS_STATUS_NOT_INITIALIZED|CUSOLVER_STATUS_ALLOC_FAILED|"
    r"cudaErrorMemoryAllocation|CUDA_ERROR_OUT_OF_MEMORY|can't allocate memory|failed to allocate",
    re.IGNORECASE,
)

_STICKY_PATTERNS = re.compile(
    r"illegal memory access|illegal address|device-side assert|unspecified launch failure|misaligned address|"
    r"illegal instruction|CUDA_ERROR_ILLEGAL|cudaErrorIllegal|cudaErrorLaunchFailure|cudaErrorAssert|"
    r"CUDA error: an? (?:illegal|unspecified)|hardware stack error|uncorrectable ECC error",
    re.IGNORECASE,
)


def resolve_device(device: str | torch.device) -> torch.device:
    """Parse a device string and check that it is available here.

    Args:
        device: e.g. ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.

    Returns:
        The ``torch.device`` (``"cuda"`` becomes ``cuda:<current device>``).

    Raises:
        DeviceError: field ``"--device"``, when the string is not a device or it is absent.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError("--device", device, "expected cpu, cuda, cuda:N or mps") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError("--device", device, "CUDA is not available on this machine; use cpu")
        count = torch.cuda.device_count()
        index = torch.cuda.current_device() if dev.index is None else dev.index
        if index >= count:
            raise DeviceError("--device", device, f"expected cuda:0 .. cuda:{count - 1}")
        return torch.device("cuda", index)
    if dev.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise DeviceError("--device", device, "MPS is not available on this machine; use cpu")
        return dev
    raise DeviceError("--device", device, "expected cpu, cuda, cuda:N or mps")


def on_device(device: torch.device | str) -> contextlib.AbstractContextManager:
    """Make ``device`` the current CUDA device for the enclosed block (a no-op off CUDA).

    CUDA events, streams, graph capture and ``torch.cuda.synchronize()`` without an argument act on
    the *current* device: with ``--device cuda:1`` they must not run on device 0.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.device(device)
    return contextlib.nullcontext()


def is_out_of_memory(exc: BaseException) -> bool:
    """True for every out-of-memory error a forward or training step can raise.

    ``torch.cuda.OutOfMemoryError``, ``MemoryError``, and the errors that carry an allocation
    failure in their text: the caching allocator's "out of memory" RuntimeError (CPU, MPS, older
    torch), cuDNN's ``CUDNN_STATUS_ALLOC_FAILED``, cuBLAS's ``CUBLAS_STATUS_ALLOC_FAILED`` and
    ``CUBLAS_STATUS_NOT_INITIALIZED`` (``cublasCreate`` fails so when no memory is left for its
    workspace) and the driver's ``cudaErrorMemoryAllocation``. The chain of causes is walked
    (``__cause__``, then ``__context__``): an error raised while a CUDA graph was captured, or a
    wrapper around the allocator's error, counts when an out-of-memory lies behind it.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:  # the error itself, then what caused it
        seen.add(id(exc))
        if isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)):
            return True
        if isinstance(exc, RuntimeError) and _OOM_PATTERNS.search(str(exc)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def is_sticky_cuda_error(exc: BaseException) -> bool:
    """True for a CUDA error that leaves this process's CUDA context unusable: an illegal memory
    access, a device-side assert, a launch failure, an ECC error (every later CUDA call fails too).
    An out-of-memory is not one (:func:`is_out_of_memory`). The chain of causes is walked.
    """
    if is_out_of_memory(exc):
        return False
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, RuntimeError) and _STICKY_PATTERNS.search(str(exc)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def release_memory() -> None:
    """Collect garbage and return the CUDA caching allocator's free blocks to the driver.

    Call it *after* leaving the ``except`` block that caught an out-of-memory error: until then
    the traceback keeps the failed frames, and so their tensors, alive.
    """
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def lock_dir() -> str:
    """The folder of the device locks: ``$EXPLORE_LOCK_DIR``, else the temporary folder, so that every
    ``explore`` process of the machine meets at the same locks. Processes given different folders do
    not wait for each other (the test suite gives each of its pytest-xdist workers its own: it times
    tiny models and asserts no figure, and its two workers would otherwise take turns on the CPU lock).

    Raises:
        ExploreError: field ``EXPLORE_LOCK_DIR``: set, but not an existing folder.
    """
    folder = os.environ.get(LOCK_DIR_ENV)
    if not folder:
        return tempfile.gettempdir()
    if not os.path.isdir(folder):
        raise ExploreError(LOCK_DIR_ENV, folder, "an existing folder for the device locks (or unset: the temporary folder)")
    return folder


def lock_path(device: torch.device | str) -> str:
    """The lock file of a physical device: one per CUDA index, one for the CPU (machine-wide), in
    :func:`lock_dir`.

    Raises:
        ExploreError: ``$EXPLORE_LOCK_DIR`` is not an existing folder.
    """
    dev = torch.device(device)
    name = f"cuda{dev.index if dev.index is not None else 0}" if dev.type == "cuda" else dev.type
    return os.path.join(lock_dir(), f"explore-{name}.lock")


@contextlib.contextmanager
def device_lock(device: torch.device | str, *, exclusive: bool) -> Iterator[None]:
    """A readers-writer lock per device, across processes, with writer preference.

    Latency is measured under the exclusive lock and proxy training runs under the shared one,
    so that no process of this machine (a worker of the same study, or of another study) trains
    on a device while another one times it there. A process waiting for the exclusive lock holds
    the *gate* first, so new trainers queue behind it instead of starving it.

    Args:
        device: the device whose lock to take (``cpu``, ``cuda:N``).
        exclusive: True to measure (waits until no one trains), False to train.
    """
    base = lock_path(device)
    with open(base + ".gate", "a+b") as gate, open(base, "a+b") as main:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(main, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        finally:
            if not exclusive:
                fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(main, fcntl.LOCK_UN)
            if exclusive:
                fcntl.flock(gate, fcntl.LOCK_UN)
