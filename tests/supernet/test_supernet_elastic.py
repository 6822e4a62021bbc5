"""The supernet of each built-in space: extracted subnets equal the supernet with the subnet
active, the largest subnet equals a plain build with the same weights, an architecture outside
the space is an error naming the knob and value, and training steps reach the shared weights."""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch

from explore.errors import ExploreError
from explore.nn import build
from explore.space import load_space
from explore.supernet import Supernet, extract


@pytest.fixture(scope="module", params=["cga", "msla", "hybrid"])
def supernet(request):
    torch.manual_seed(0)
    return Supernet(load_space(request.param), in_chans=1, num_classes=10, seed=0)


def _perturb_bn(supernet):
    with torch.no_grad():  # non-trivial running statistics, so eval mode tests their slices too
        for name, buf in supernet.weights.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 1.5)


def test_extracted_subnets_equal_the_supernet_with_them_active(supernet):
    _perturb_bn(supernet)
    supernet.eval()
    rng = random.Random(1)
    x = torch.randn(2, 1, 32, 32)
    configs = [supernet.largest(g) for g in supernet.groups] + [supernet.smallest(g) for g in supernet.groups]
    configs += [supernet.sample(rng) for _ in range(6)]
    for config in configs:
        supernet.set_active(config)
        model = extract(supernet, config)
        assert type(model) is type(build(config)) and model.config == config
        assert [n for n, _ in model.state_dict().items()] == list(build(config).state_dict())
        with torch.no_grad():
            assert (supernet(x) - model(x)).abs().max() <= 1e-5, config.summary()


def test_the_largest_subnet_equals_a_plain_build_with_the_same_weights(supernet):
    group = supernet.groups[0]
    config = supernet.largest(group)
    torch.manual_seed(5)
    plain = build(config).eval()
    with torch.no_grad():
        for p in plain.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # nothing left at a value the supernet already holds
    supernet.load_subnet(plain)
    supernet.eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert (supernet.run(x, config) - plain(x)).abs().max() <= 1e-5


def test_an_architecture_outside_the_space_names_the_knob_and_value(supernet):
    config = supernet.largest(supernet.groups[0])
    wide = dataclasses.replace(config, stages=(dataclasses.replace(config.stages[0], width=1000, heads=1),
                                               *config.stages[1:]))
    with pytest.raises(ExploreError) as info:
        extract(supernet, wide)
    assert info.value.field == "stage0.width" and info.value.value == 1000
    with pytest.raises(ExploreError) as info:
        supernet.set_active(config.replace(num_classes=3))
    assert info.value.field == "num_classes"


def test_gradients_of_a_subnet_reach_the_shared_weights(supernet):
    supernet.train()
    config = supernet.smallest(supernet.groups[-1])
    loss = supernet.run(torch.randn(4, 1, 32, 32), config).logsumexp(1).mean()
    loss.backward()
    grads = [p.grad for p in supernet.weights.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    supernet.zero_grad()
