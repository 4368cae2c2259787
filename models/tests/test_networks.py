"""The cnn family's networks: layouts as the modules name them, and the population forward pass."""

import pytest
import torch

from d2nwg import networks


def test_parameter_counts_and_layouts():
    assert networks.get_arch("cnn-s").parameter_count() == 2464
    assert networks.get_arch("cnn-w").parameter_count() == 11018
    for arch in networks.ARCHS.values():
        module = networks.CnnModule(arch)
        assert [(n, tuple(p.shape)) for n, p in module.named_parameters()] == arch.layout()
        assert sum(p.numel() for p in module.parameters()) == arch.parameter_count()
        assert module(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(KeyError, match="cnn-s"):
        networks.get_arch("resnet")


def test_population_forward_equals_each_module():
    x = torch.rand(3, 5, 1, 28, 28)
    for arch in networks.ARCHS.values():
        inits = [networks.init_params(arch, s) for s in range(3)]
        stacked = {name: torch.stack([i[name] for i in inits]) for name, _ in arch.layout()}
        logits = networks.population_forward(arch, stacked, x)
        for p, init in enumerate(inits):
            module = networks.CnnModule(arch)
            module.load_state_dict(init)
            torch.testing.assert_close(logits[p], module(x[p]), rtol=1e-5, atol=1e-5)
