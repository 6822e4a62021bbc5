"""Timing a model on a shared machine: under the device's exclusive lock, and in interleaved rounds.

The protocols (:mod:`explore.measure.protocols`) are the only timer; this module adds the two
conventions every caller that times a model follows (a study's trials, the end-of-study
re-measurement, latency tables, the ablations and the benchmarks):

* a model is timed under the exclusive lock of the protocol's device
  (:func:`explore.device.device_lock`): no process of this machine times a device while another
  trains on it;
* several models are timed round-robin, ``rounds`` times (:func:`time_rounds`): a slow spell of a
  shared machine then falls on different models in different rounds instead of on all the
  repeats of one, and callers keep each model's fastest round.

Follows: the latency measurement of arXiv:2305.07027 §4.1 (BN fused, batch 16 on one CPU thread
for the CPU figure), which the protocols implement.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from explore.device import device_lock
from explore.measure.protocols import CpuTiming, Measurement, Protocol, measure, measure_pair
from explore.measure.runners import compile_budget

__all__ = ["time_model", "time_pair", "time_rounds"]


def time_model(model: nn.Module, protocol: Protocol) -> Measurement:
    """Measure ``model`` with ``protocol`` under the exclusive lock of the protocol's device: waits
    until no process of this machine trains there (see :func:`explore.device.device_lock`).

    Raises:
        DeviceError, ExploreError: as :func:`explore.measure.measure`.
    """
    with device_lock(protocol.device, exclusive=True):
        return measure(model, protocol)


def time_pair(first: nn.Module, second: nn.Module, protocol: Protocol) -> CpuTiming:
    """Time two models repeat by repeat (:func:`explore.measure.protocols.measure_pair`) under the
    exclusive lock of the protocol's device.

    Args:
        first: a model.
        second: the model it is compared with.
        protocol: a CPU protocol.

    Returns:
        The paired timing (``ratios``: first / second per pair).

    Raises:
        ExploreError: as :func:`explore.measure.protocols.measure_pair`, as is ``DeviceError``.
    """
    with device_lock(protocol.device, exclusive=True):
        return measure_pair(first, second, protocol)


def time_rounds(jobs: Sequence[tuple[nn.Module, Protocol]], rounds: int,
                on_measured: Callable[[int, int], None] | None = None) -> list[list[Measurement]]:
    """Time every (model, protocol) once per round, round-robin over the jobs, ``rounds`` times
    (:func:`time_model`): a slow spell of a shared machine then falls on different jobs in different
    rounds instead of on all the repeats of one. Callers keep the fastest round of each job.

    With a ``compile`` job among more jobs than one dynamo generation holds
    (:func:`explore.measure.runners.compile_budget`), the rounds go round-robin over consecutive groups of
    that many jobs, one group after the other: a group's models stay compiled from their first round to
    their last (re-measuring a model compiles nothing), where a round over all the jobs would reset dynamo
    and compile every model again in every round.

    Args:
        jobs: (model, protocol) pairs.
        rounds: rounds (>= 1).
        on_measured: called with (measurements done, total) after each.

    Returns:
        Per job, its measurements in round order.

    Raises:
        DeviceError: as :func:`time_model`, as is ``ExploreError``.
    """
    results: list[list[Measurement]] = [[] for _ in jobs]
    rounds = max(1, rounds)
    total = rounds * len(jobs)
    group = len(jobs)
    if any(protocol.mode == "compile" for _, protocol in jobs):
        group = min(group, compile_budget())
    group = max(1, group)
    done = 0
    for first in range(0, len(jobs), group):
        for _ in range(rounds):
            for i in range(first, min(len(jobs), first + group)):
                model, protocol = jobs[i]
                results[i].append(time_model(model, protocol))
                done += 1
                if on_measured is not None:
                    on_measured(done, total)
    return results
