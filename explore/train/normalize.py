"""Model input: uint8 batches to normalised float32, resized to the model's input side."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from explore.errors import DataError

__all__ = ["Normalizer", "to_model_input"]


class Normalizer:
    """Per-channel normalisation constants, built once on a device, applied to uint8 batches.

    Building puts ``mean`` and ``std`` on ``device`` as float32 (1, C, 1, 1) tensors (one
    host-to-device copy each on a GPU); calling converts a batch with no further host work, so a
    training or evaluation loop builds one per run instead of one per batch.

    Args:
        img_size: side in pixels of the model input.
        mean: per-channel mean in [0, 1] units, length C.
        std: per-channel standard deviation in [0, 1] units, length C, all > 0.
        device: where the batches will live (torch device or string).

    Attributes:
        img_size: side in pixels of the model input.
        channels: C, the number of channels a batch must have.
        mean: float32 (1, C, 1, 1) on ``device``.
        std: float32 (1, C, 1, 1) on ``device``.

    Raises:
        DataError: ``img_size`` is not a positive integer, ``mean`` and ``std`` differ in length
            or are empty (field ``"mean/std"``), or a ``std`` value is not positive.
    """

    def __init__(
        self,
        img_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        device: str | torch.device = "cpu",
    ) -> None:
        if isinstance(img_size, bool) or not isinstance(img_size, int) or img_size < 1:
            raise DataError("img_size", img_size, "expected a positive integer (pixels)")
        mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        if not mean or len(mean) != len(std):
            raise DataError("mean/std", (mean, std), "expected one value each per channel, same length")
        if any(not s > 0 for s in std):
            raise DataError("std", std, "expected positive values")
        c = len(mean)
        self.img_size = img_size
        self.channels = c
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, c, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, c, 1, 1)

    def __call__(self, images_uint8: torch.Tensor) -> torch.Tensor:
        """Convert a uint8 batch (as :func:`to_model_input` does) with the prebuilt constants.

        Args:
            images_uint8: uint8 tensor (B, C, H, W), pixel values 0..255, on this normaliser's
                device.

        Returns:
            float32 tensor (B, C, img_size, img_size) on the same device.

        Raises:
            DataError: the batch is not a uint8 4-D tensor, has another number of channels
                (field ``"mean/std"``) or lives on another device.
        """
        c = _check_batch(images_uint8)
        if c != self.channels:
            raise DataError(
                "mean/std",
                (tuple(self.mean.flatten().tolist()), tuple(self.std.flatten().tolist())),
                f"expected {c} value(s) each, one per channel",
            )
        if images_uint8.device != self.mean.device:
            raise DataError("images", str(images_uint8.device), f"expected a batch on {self.mean.device}")
        x = images_uint8.to(torch.float32).div_(255.0)
        size = self.img_size
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
        return x.sub_(self.mean).div_(self.std)


def _check_batch(images_uint8: torch.Tensor) -> int:
    """The channels C of a uint8 batch (B, C, H, W); DataError (field ``images``) for anything else."""
    if images_uint8.dtype != torch.uint8 or images_uint8.ndim != 4:
        raise DataError("images", f"{images_uint8.dtype} {tuple(images_uint8.shape)}",
                        "expected a uint8 tensor (B, C, H, W)")
    return int(images_uint8.shape[1])


def to_model_input(
    images_uint8: torch.Tensor,
    img_size: int,
    mean: Sequence[float],
    std: Sequence[float],
) -> torch.Tensor:
    """Convert a uint8 image batch to normalised float32 model input.

    Scales to [0, 1], resizes bilinearly (no antialiasing) to ``img_size`` x ``img_size`` when
    the batch has another size, then subtracts ``mean`` and divides by ``std`` per channel.
    Each call builds the constants anew (a host-to-device copy on a GPU); loops should build
    one :class:`Normalizer` and call it per batch instead.

    Args:
        images_uint8: uint8 tensor (B, C, H, W), pixel values 0..255, on any device.
        img_size: side in pixels of the model input.
        mean: per-channel mean in [0, 1] units, length C.
        std: per-channel standard deviation in [0, 1] units, length C, all > 0.

    Returns:
        float32 tensor (B, C, img_size, img_size) on the device of ``images_uint8``.

    Raises:
        DataError: the batch is not a uint8 4-D tensor, ``img_size`` is not positive, or
            ``mean``/``std`` do not have one value per channel.
    """
    c = _check_batch(images_uint8)
    if len(mean) != c or len(std) != c:
        raise DataError("mean/std", (tuple(mean), tuple(std)), f"expected {c} value(s) each, one per channel")
    return Normalizer(img_size, mean, std, images_uint8.device)(images_uint8)
