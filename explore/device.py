"""Device selection shared by measurement and training.

One place that turns a ``--device`` string into a ``torch.device`` or a clear error.
"""

from __future__ import annotations

import torch

from explore.errors import DeviceError

__all__ = ["resolve_device"]


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
