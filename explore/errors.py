"""Errors that the toolkit raises for bad input.

Every error names the offending field and value, so that the CLI can print one clear line and exit
non-zero without writing anything.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ExploreError", "ConfigError", "SpaceError", "DataError", "DeviceError", "OutOfMemory",
           "NonFiniteLossError"]


class ExploreError(ValueError):
    """Bad input to the toolkit: names the field, the value and what was expected.

    Args:
        field: the offending field (e.g. ``"stages[1].heads"``, ``"--device"``).
        value: the value that was given.
        expected: what would have been accepted, in words.
    """

    def __init__(self, field: str, value: Any, expected: str) -> None:
        self.field = field
        self.value = value
        self.expected = expected
        super().__init__(f"{field} = {value!r}: {expected}")


class ConfigError(ExploreError):
    """An architecture config that is malformed or infeasible (raised before anything is built)."""


class SpaceError(ExploreError):
    """A search-space file that cannot be found, parsed or validated."""


class DataError(ExploreError):
    """A dataset name or path that is unknown, missing or in the wrong format."""


class DeviceError(ExploreError):
    """A device that is unknown or not available on this machine."""


class OutOfMemory(ExploreError, MemoryError):
    """Out of memory even at the smallest size tried (a batch of 1): a bad-input error for a command
    (one ``error:`` line), and a ``MemoryError``, so that a study treats it as every other
    out-of-memory (the trial is PRUNED with its reason; :func:`explore.device.is_out_of_memory`)."""


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the trial stops early and is marked, not the study."""

    def __init__(self, step: int, loss: float) -> None:
        self.step = step
        self.loss = loss
        super().__init__(f"loss became {loss} at step {step}")
