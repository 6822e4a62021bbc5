"""Shared fixtures: small configs and the Fashion-MNIST availability check."""

from __future__ import annotations

import os
import warnings

import pytest
import torch

from explore.arch import ArchConfig, StageConfig

FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
needs_fashion_mnist = pytest.mark.skipif(
    not os.path.isfile(os.path.join(FASHION_MNIST, "train-images-idx3-ubyte.gz")),
    reason="Debian package dataset-fashion-mnist is not installed (the README's test command installs it)",
)

warnings.filterwarnings("ignore", category=FutureWarning)
torch.set_num_threads(min(2, torch.get_num_threads()))


def tiny_config(**model_overrides) -> ArchConfig:
    """A 3-stage config small enough for fast CPU tests."""
    stages = (
        StageConfig(width=32, depth=1, heads=2, qk_dim=8, kernels=(5, 3)),
        StageConfig(width=48, depth=1, heads=3, qk_dim=8, kernels=(5, 3, 3)),
        StageConfig(width=64, depth=1, heads=4, qk_dim=8, kernels=(3, 3, 3, 3)),
    )
    fields = dict(stages=stages, img_size=64, in_chans=1, num_classes=10)
    fields.update(model_overrides)
    return ArchConfig(**fields)


@pytest.fixture
def tiny() -> ArchConfig:
    return tiny_config()
