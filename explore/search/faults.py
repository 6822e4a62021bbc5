"""The one seam for test-only fault injection (:mod:`tests.tools.faults` and the tests use it).

The environment variable ``EXPLORE_INJECT_FAULTS="kind@trial,..."`` makes trial number ``trial``
suffer ``kind`` after its latency is measured, before it trains: ``oom`` (raises
``torch.cuda.OutOfMemoryError``), ``nan`` (fills the weights with NaN, so that training sees a NaN
loss), ``error`` (raises ``RuntimeError``) or ``kill`` (``SIGKILL`` to its own process). The study's
objective calls :func:`inject_fault` once per trial; nothing else reads the variable.
"""

from __future__ import annotations

import os
import signal

import torch

__all__ = ["FAULTS_ENV", "FAULT_KINDS", "injected_fault", "inject_fault"]

FAULTS_ENV = "EXPLORE_INJECT_FAULTS"
"""Environment variable of the fault-injection seam (see the module docstring)."""
FAULT_KINDS = ("oom", "nan", "error", "kill")


def injected_fault(trial_number: int) -> str | None:
    """The kind of fault ``EXPLORE_INJECT_FAULTS`` sets for this trial, or None."""
    spec = os.environ.get(FAULTS_ENV, "")
    for item in spec.split(","):
        kind, _, number = item.strip().partition("@")
        if kind in FAULT_KINDS and number.strip().isdigit() and int(number) == trial_number:
            return kind
    return None


def inject_fault(trial_number: int, model: torch.nn.Module) -> None:
    """Suffer the fault ``EXPLORE_INJECT_FAULTS`` sets for this trial, if any (see the module docstring).

    Raises:
        torch.cuda.OutOfMemoryError: ``oom``; RuntimeError: ``error``.
    """
    kind = injected_fault(trial_number)
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "oom":
        raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 20.00 GiB (injected by {FAULTS_ENV})")
    if kind == "error":
        raise RuntimeError(f"injected fault ({FAULTS_ENV})")
    if kind == "nan":
        with torch.no_grad():
            for param in model.parameters():
                param.fill_(float("nan"))
