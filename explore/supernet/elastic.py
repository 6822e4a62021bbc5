"""The weight-sharing supernet of a space: one tensor per weight at the space's largest sizes, and
any point of the space run as ``build(config)`` with slices of those tensors.

A subnet is never a second implementation of a block: the supernet builds the module that
:func:`explore.nn.build` makes for the config (once, cached) and runs it with
``torch.func.functional_call`` on slices of its own tensors (:mod:`explore.supernet.slicing`), so
gradients reach the shared weights and :func:`extract` is that module with the slices copied in.

Follows: Once-for-All (Cai et al., arXiv:1908.09791 §3: one network holding every subnet) and
AutoFormer (Chen et al., arXiv:2107.00651 §3.1: weight entanglement); subnets are sampled with
BigNAS's sandwich rule (Yu et al., arXiv:2003.11142 §3.1) by :mod:`explore.supernet.train`.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call

from explore.arch.config import ArchConfig
from explore.errors import ExploreError
from explore.nn.build import EfficientViT, build
from explore.space.inverse import space_params
from explore.space.knobs import base_param_name
from explore.space.search_space import SearchSpace
from explore.supernet.envelope import Envelope, envelope_of, subnet_group
from explore.supernet.slicing import Slot, plan_subnet, resolve

__all__ = ["Supernet", "extract", "check_in_space", "PickTrial", "MIXER_SIZE_ORDER"]

MIXER_SIZE_ORDER = ("none", "linear", "msla", "cga", "mhsa")
"""Token mixers from the fewest weights to the most: the largest subnet takes the last its stage
allows, the smallest the first."""


class PickTrial:
    """An Optuna-trial stand-in that answers a space's suggestions with ``pick(name, values)``
    (``values`` every value the knob may take there, ascending for numbers).

    Args:
        pick: the answer for a parameter name and its values.
    """

    def __init__(self, pick: Callable[[str, Sequence[Any]], Any]) -> None:
        self.pick = pick
        self.params: dict[str, Any] = {}

    def _answer(self, name: str, values: Sequence[Any]) -> Any:
        value = self.pick(name, list(values))
        self.params[name] = value
        return value

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        """One of ``choices``."""
        return self._answer(name, choices)

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        """One of ``low, low + step, ..., high``."""
        return self._answer(name, range(low, high + 1, step))

    def suggest_float(self, name: str, low: float, high: float, step: float | None = None, log: bool = False) -> float:
        """One of the stepped values, or ``low`` / ``high`` / a uniform draw for a continuous range."""
        if step:
            count = int((high - low) / step + 1e-9) + 1
            return self._answer(name, [round(low + i * step, 10) for i in range(count)])
        return self._answer(name, [low, high])


def _in_group(group: str, choose: Callable[[str, Sequence[Any]], Any]) -> Callable[[str, Sequence[Any]], Any]:
    """A pick that keeps the sub-supernet's layout and norm (``group`` = ``layout-norm``) and lets
    ``choose(base name, values)`` decide every other knob."""
    layout, norm = group.split("-")

    def pick(name: str, values: Sequence[Any]) -> Any:
        base = base_param_name(name)
        if base == "layout":
            return layout
        if base == "norm":
            return norm
        return choose(base, values)

    return pick


def _extreme(largest: bool, group: str) -> Callable[[str, Sequence[Any]], Any]:
    def choose(base: str, values: Sequence[Any]) -> Any:
        if all(isinstance(v, str) for v in values):
            if base.endswith("token_mixer"):
                ranked = sorted(values, key=MIXER_SIZE_ORDER.index)
                return ranked[-1] if largest else ranked[0]
            return values[0]
        if all(isinstance(v, (int, float)) for v in values):
            return max(values) if largest else min(values)
        labels = sorted(values, key=lambda label: [int(x) for x in str(label).split(",") if x.isdigit()])
        return labels[-1] if largest else labels[0]  # list knobs by their kernels

    return _in_group(group, choose)


def _random_pick(rng: random.Random, group: str) -> Callable[[str, Sequence[Any]], Any]:
    return _in_group(group, lambda _base, values: values[rng.randrange(len(values))])


def check_in_space(space: SearchSpace, config: ArchConfig, *, in_chans: int, num_classes: int) -> None:
    """Raise unless ``config`` is a point of ``space`` (for a dataset of that many channels/classes).

    Raises:
        ExploreError: naming the first knob whose value the space does not hold (``stage1.width``
            and the value), or ``in_chans`` / ``num_classes`` when the dataset differs.
    """
    if config.in_chans != in_chans or config.num_classes != num_classes:
        name = "in_chans" if config.in_chans != in_chans else "num_classes"
        raise ExploreError(name, getattr(config, name), f"the supernet was built for {in_chans} channels "
                                                        f"and {num_classes} classes")
    try:
        _, built, _ = space_params(config, space, in_chans=in_chans, num_classes=num_classes)
    except ExploreError as exc:
        raise ExploreError("architecture", exc.value, exc.expected.replace("study's space", f"space {space.name!r}")) from None
    if built == config:
        return
    a, b = config.to_dict(), built.to_dict()
    for key in a:
        if key != "stages" and a[key] != b[key]:
            raise ExploreError(key, a[key], f"outside space {space.name!r} (nearest: {b[key]!r})")
    for i, (sa, sb) in enumerate(zip(a["stages"], b["stages"])):
        for key in sa:
            if sa[key] != sb[key]:
                raise ExploreError(f"stage{i}.{key}", sa[key], f"outside space {space.name!r} (nearest: {sb[key]!r})")
    raise ExploreError("architecture", config.summary(), f"outside space {space.name!r}")  # pragma: no cover


class _Subnet:
    """A config's module skeleton and the resolved slices of its entries."""

    def __init__(self, skeleton: EfficientViT, plan: dict[str, tuple[str, list[tuple[int, str, Any]]]]) -> None:
        self.skeleton = skeleton
        self.plan = plan


class Supernet(nn.Module):
    """The supernet of a space: (B, in_chans, H, W) -> logits (B, num_classes) of the active subnet.

    Args:
        space: the space (every knob with a finite list of values).
        in_chans: input channels of the dataset.
        num_classes: classes of the dataset.
        seed: seeds the initial weights (each corner point's ``build`` initialisation copied in).

    Attributes:
        space: the space.
        envelope: its largest sizes and corner points (:mod:`explore.supernet.envelope`).
        weights: the shared tensors, one per weight name and sub-supernet (``"sandwich-bn/stages/0/..."``).
        active: the config :meth:`forward` runs (default: the largest subnet of the first group).

    Raises:
        ExploreError: the space has a knob the supernet cannot make elastic (see
            :func:`~explore.supernet.envelope.envelope_of`).
    """

    def __init__(self, space: SearchSpace, *, in_chans: int, num_classes: int, seed: int = 0,
                 cache_size: int = 32) -> None:
        super().__init__()
        self.space = space
        self.in_chans, self.num_classes = in_chans, num_classes
        self.envelope: Envelope = envelope_of(space, in_chans=in_chans, num_classes=num_classes)
        self.weights = nn.Module()
        self._cache: OrderedDict[ArchConfig, _Subnet] = OrderedDict()
        self._cache_size = cache_size
        shapes: dict[str, tuple[tuple[int, ...], bool, torch.dtype]] = {}
        for corner in self.envelope.corners:
            with torch.device("meta"):
                model = build(corner)
            state = model.state_dict(keep_vars=True)
            for name, slot in plan_subnet(model, corner, self.envelope).items():
                tensor, extent = state[name], slot.extent()
                if slot.key in shapes:
                    extent = tuple(max(a, b) for a, b in zip(shapes[slot.key][0], extent))
                shapes[slot.key] = (extent, isinstance(tensor, nn.Parameter), tensor.dtype)
        for key, (shape, is_param, dtype) in sorted(shapes.items()):
            if is_param:
                self.weights.register_parameter(key, nn.Parameter(_initial(key, shape)))
            else:
                fill = 1.0 if key.endswith("running_var") else 0.0
                self.weights.register_buffer(key, torch.full(shape, fill, dtype=dtype))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for corner in self.envelope.corners:
                self.load_subnet(build(corner))
        self.active = self.largest(self.envelope.groups[0])

    # ----------------------------------------------------------------------------------------------
    # the points of the space
    @property
    def groups(self) -> tuple[str, ...]:
        """The sub-supernets, ``"<layout>-<norm>"``."""
        return self.envelope.groups

    def largest(self, group: str) -> ArchConfig:
        """The largest subnet of a group: every numeric knob at its largest, each stage's most
        weighty mixer (:data:`MIXER_SIZE_ORDER`), the first choice of the other text knobs."""
        return self.space.sample(PickTrial(_extreme(True, group)), in_chans=self.in_chans, num_classes=self.num_classes)

    def smallest(self, group: str) -> ArchConfig:
        """The smallest subnet of a group (every numeric knob at its smallest)."""
        return self.space.sample(PickTrial(_extreme(False, group)), in_chans=self.in_chans, num_classes=self.num_classes)

    def sample(self, rng: random.Random, group: str | None = None) -> ArchConfig:
        """A uniformly random subnet (of ``group``, else of a random group), drawn with ``rng``."""
        group = group or self.groups[rng.randrange(len(self.groups))]
        return self.space.sample(PickTrial(_random_pick(rng, group)), in_chans=self.in_chans,
                                 num_classes=self.num_classes)

    def check(self, config: ArchConfig) -> None:
        """Raise unless ``config`` is a point of the space (see :func:`check_in_space`).

        Raises:
            ExploreError: naming the knob and value outside the space.
        """
        check_in_space(self.space, config, in_chans=self.in_chans, num_classes=self.num_classes)

    # ----------------------------------------------------------------------------------------------
    # running a subnet
    def _subnet(self, config: ArchConfig) -> _Subnet:
        cached = self._cache.get(config)
        device = next(iter(self.weights.parameters())).device
        if cached is not None and next(iter(cached.skeleton.parameters())).device == device:
            self._cache.move_to_end(config)
            return cached
        self.check(config)
        with torch.device(device), torch.random.fork_rng(devices=[]):
            skeleton = build(config)
        slots = plan_subnet(skeleton, config, self.envelope)
        plan = {name: (slot.key, self._resolve(slot, device)) for name, slot in slots.items()}
        subnet = self._cache[config] = _Subnet(skeleton, plan)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return subnet

    def _resolve(self, slot: Slot, device: torch.device) -> list[tuple[int, str, Any]]:
        full = self._tensor(slot.key)
        ops = []
        for dim, (d, size) in enumerate(zip(slot.dims, full.shape)):
            kind, arg = resolve(d, size)
            if kind == "index":
                arg = arg.to(device)  # type: ignore[union-attr]
            if kind != "all":
                ops.append((dim, kind, arg))
        return ops

    def _tensor(self, key: str) -> torch.Tensor:
        try:
            return getattr(self.weights, key)
        except AttributeError:
            raise ExploreError("architecture", key, "a weight the supernet does not hold (its envelope missed it)") from None

    def subnet_state(self, config: ArchConfig) -> dict[str, torch.Tensor]:
        """The state dict of ``build(config)`` as slices of the shared tensors (differentiable:
        gradients of a loss on them reach the supernet's parameters).

        Raises:
            ExploreError: ``config`` is outside the space (naming the knob and value).
        """
        out = {}
        for name, (key, ops) in self._subnet(config).plan.items():
            tensor = self._tensor(key)
            for dim, kind, arg in ops:
                tensor = tensor.narrow(dim, *arg) if kind == "narrow" else tensor.index_select(dim, arg)
            out[name] = tensor
        return out

    def run(self, x: torch.Tensor, config: ArchConfig) -> torch.Tensor:
        """Logits of subnet ``config``: (B, in_chans, H, W) -> (B, num_classes), in the supernet's
        mode (train: batch statistics; eval: the shared running statistics).

        Raises:
            ExploreError: ``config`` is outside the space.
        """
        subnet = self._subnet(config)
        subnet.skeleton.train(self.training)  # also drops the skeleton's cached attention biases
        return functional_call(subnet.skeleton, self.subnet_state(config), (x,))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the active subnet (:attr:`active`): (B, in_chans, H, W) -> (B, num_classes)."""
        return self.run(x, self.active)

    def set_active(self, config: ArchConfig) -> None:
        """Make ``config`` the subnet :meth:`forward` runs.

        Raises:
            ExploreError: ``config`` is outside the space.
        """
        self._subnet(config)
        self.active = config

    @torch.no_grad()
    def load_subnet(self, model: EfficientViT) -> None:
        """Write the weights (and BN statistics) of ``model = build(config)`` into the shared
        tensors at that subnet's slices (a warm start from a trained model; the initialisation).

        Raises:
            ExploreError: ``model.config`` is outside the space.
        """
        config = model.config
        if config not in self.envelope.corners:
            self.check(config)
        slots = plan_subnet(model, config, self.envelope)
        for name, value in model.state_dict().items():
            slot = slots[name]
            full = self._tensor(slot.key)
            view, index = full, None
            for dim, (d, size) in enumerate(zip(slot.dims, full.shape)):
                kind, arg = resolve(d, size)
                if kind == "narrow":
                    view = view.narrow(dim, *arg)
                elif kind == "index":
                    if index is not None:
                        raise AssertionError(f"{name}: more than one indexed dimension")  # slicing never makes two
                    index = (dim, arg)
            value = value.to(full.device, full.dtype)
            if index is None:
                view.copy_(value)
            else:
                view.index_copy_(index[0], index[1].to(full.device), value)


def _initial(key: str, shape: tuple[int, ...]) -> torch.Tensor:
    """Placeholder values of a shared parameter (overwritten where a corner point's init lands):
    norm scales 1, biases and attention biases 0, other weights trunc-normal(0.02)."""
    if key.endswith("attention_biases") or (len(shape) <= 1 and not key.endswith("weight")):
        return torch.zeros(shape)
    if len(shape) <= 1:
        return torch.ones(shape)
    return nn.init.trunc_normal_(torch.empty(shape), std=0.02)


def extract(supernet: Supernet, config: ArchConfig) -> EfficientViT:
    """The subnet ``config`` as a plain model: exactly the module ``build(config)`` makes, with the
    supernet's weights and BN statistics at that subnet's slices (in eval mode, its logits equal
    the supernet's with the subnet active).

    Args:
        supernet: the supernet.
        config: a point of its space.

    Returns:
        ``build(config)`` on the supernet's device, in eval mode.

    Raises:
        ExploreError: ``config`` is outside the space (naming the knob and value).
    """
    supernet.check(config)
    device = next(iter(supernet.weights.parameters())).device
    with torch.device(device):
        model = build(config)
    with torch.no_grad():
        state = {name: t.detach().clone() for name, t in supernet.subnet_state(config).items()}
    model.load_state_dict(state)
    return model.eval()
