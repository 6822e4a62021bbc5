"""Input resolutions as recipes, result files and reports write them: ``512`` (square) or
``"1024x2048"`` (height x width, e.g. Cityscapes' frames in arXiv:2205.14756 §4).

A base module: any stage may import it (it imports only :mod:`explore.errors`); the ablation
recipes parse ``[measure] img_sizes`` with it and the ablation report labels and orders its
resolution columns with the same functions.
"""

from __future__ import annotations

from explore.errors import ExploreError

__all__ = ["resolution", "resolution_label", "resolution_pixels"]


def resolution(img: int | str) -> tuple[int, int]:
    """(H, W) pixels of a resolution: ``512`` or ``"512"`` -> (512, 512); ``"1024x2048"`` -> (1024, 2048).

    Raises:
        ExploreError: anything else (field ``img_sizes``).
    """
    if isinstance(img, int) and not isinstance(img, bool):
        return img, img
    text = str(img)
    h, sep, w = text.partition("x")
    if sep and h.isdigit() and w.isdigit() and int(h) > 0 and int(w) > 0:
        return int(h), int(w)
    if text.isdigit() and int(text) > 0:
        return int(text), int(text)
    raise ExploreError("img_sizes", img, 'expected pixels (512) or "HxW" (e.g. "1024x2048")')


def resolution_label(img: int | str) -> str:
    """``"512"`` for a square resolution, ``"1024x2048"`` (height x width) otherwise.

    Raises:
        ExploreError: not a resolution (:func:`resolution`).
    """
    h, w = resolution(img)
    return str(h) if h == w else f"{h}x{w}"


def resolution_pixels(img: int | str) -> int:
    """Pixels (H x W) of a resolution, for ordering resolutions.

    Raises:
        ExploreError: not a resolution (:func:`resolution`).
    """
    h, w = resolution(img)
    return h * w
