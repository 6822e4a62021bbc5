"""Shared fixtures: small configs and the Fashion-MNIST availability check."""

from __future__ import annotations

import os
import tempfile
import warnings

import pytest
import torch

from explore.arch import ArchConfig, StageConfig

FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
needs_fashion_mnist = pytest.mark.skipif(
    not os.path.isfile(os.path.join(FASHION_MNIST, "train-images-idx3-ubyte.gz")),
    reason="Debian package dataset-fashion-mnist is not installed (the README's test command installs it)",
)

# A contended CPU measurement is flagged, not measured again after 1 s and 3 s pauses, in this process
# and in the `explore` processes the tests start (they inherit the environment): the suite times tiny
# models, asserts no figure, and its two xdist workers share the two cores, so most measurements are
# "contended"; the pause-and-retry mechanism itself is tested with fake clocks
# (tests/measure/test_contention.py sets the default back). The pauses alone were 28 of a tiny
# 4-trial study's 74 s on a loaded machine.
os.environ.setdefault("EXPLORE_CONTENTION_PAUSE_S", "none")

# Device locks per pytest-xdist worker: measurement waits for training under a machine-wide lock
# (explore.device.device_lock), so the two workers' studies would take turns on the CPU; the suite
# asserts no latency figure, and the lock itself is tested inside one worker (tests/measure/test_cuda_paths.py).
if os.environ.get("PYTEST_XDIST_WORKER") and not os.environ.get("EXPLORE_LOCK_DIR"):
    _LOCKS = os.path.join(tempfile.gettempdir(), f"explore-locks-{os.environ['PYTEST_XDIST_WORKER']}")
    os.makedirs(_LOCKS, exist_ok=True)
    os.environ["EXPLORE_LOCK_DIR"] = _LOCKS

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


SLOWEST_FILES = (
    "tests/cli/test_acceptance.py", "tests/search/test_study_parallel.py", "tests/cli/test_cli.py",
    "tests/search/test_schedule.py", "tests/search/test_study_latency_table.py", "tests/search/test_study_faults.py",
    "tests/measure/test_protocols.py", "tests/search/test_schedule_comparison.py",
)
"""Test files that take a minute or more (the `--durations` list of a CI log), collected first."""


def pytest_collection_modifyitems(config, items):
    """The slowest files first (longest-first scheduling): pytest-xdist's `--dist loadfile` hands files
    to its workers in collection order, and a long file handed out last leaves the other worker idle
    at the end. The order inside a file is kept."""
    rank = {name: i for i, name in enumerate(SLOWEST_FILES)}
    root = config.rootpath
    items.sort(key=lambda item: rank.get(item.path.relative_to(root).as_posix(), len(rank)))
