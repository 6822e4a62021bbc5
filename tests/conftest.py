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

# A contended CPU measurement is measured again at once rather than after 1 s and 3 s pauses, in this
# process and in the `explore` processes the tests start (they inherit the environment): the suite
# times tiny models and asserts no figure, and the pause-and-retry mechanism itself is tested with
# fake clocks (tests/measure/test_contention.py counts the pauses). On a loaded machine the pauses
# were 28 of a tiny 4-trial study's 74 s.
os.environ.setdefault("EXPLORE_CONTENTION_PAUSE_S", "0")

warnings.filterwarnings("ignore", category=FutureWarning)
# Torch threads per test process: the 2-core machine's cores are shared out among pytest-xdist's
# workers (the README's test command runs two), so that two workers do not oversubscribe them.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, torch.get_num_threads()) // _WORKERS))


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
