"""The head generator's sampling contract, on an untrained generator (the properties hold for any weights)."""

import dataclasses

import numpy as np
import pytest

from d2nwg.ddim import NoiseSchedule
from d2nwg.denoiser import Denoiser, DenoiserConfig
from d2nwg.generation import SamplingSettings
from d2nwg.head_generator import HeadGenerator
from d2nwg.head_tokens import TokenNorm
from d2nwg.set_encoder import EncoderConfig, SetEncoder
from d2nwg.train_head import GeneratorConfig, make_checkpoint
from d2nwg.weight_vae import VaeConfig, WeightVae

FEATURES = 48


@pytest.fixture(scope="module")
def generator() -> HeadGenerator:
    import torch

    torch.manual_seed(0)
    vae = WeightVae(VaeConfig(token_dim=FEATURES + 1, latent_dim=8, hidden_dim=32, whitening_rank=4))
    vae.decoder.basis.set_whitening(torch.linalg.qr(torch.randn(FEATURES, 4))[0].T, torch.rand(4), (3e-4, 3e-3))
    encoder = SetEncoder(EncoderConfig(feature_dim=FEATURES, dim=32, heads=4, inducing_points=4, latent_dim=8))
    denoiser = Denoiser(DenoiserConfig(latent_dim=8, condition_dim=32, dim=32, heads=4, layers=2))
    # The output layer starts at zero; give it weights so the test sees the denoiser's real dependence on its inputs.
    torch.nn.init.normal_(denoiser.latent_out.weight, std=0.1)
    norm = TokenNorm(0.0, 1.0, 0.0, 1.0)
    return HeadGenerator(make_checkpoint(GeneratorConfig(), vae, encoder, denoiser, norm, 1.0,
                                         NoiseSchedule(train_steps=100), []))


def support(classes: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((int(rng.integers(1, 6)), FEATURES)).astype(np.float32) for _ in range(classes)]


def test_same_seed_gives_the_same_heads_and_another_seed_other_heads(generator):
    data = support(5, 0)
    a = generator.generate(data, SamplingSettings(samples=3, steps=10, seed=7))
    b = generator.generate(data, SamplingSettings(samples=3, steps=10, seed=7))
    c = generator.generate(data, SamplingSettings(samples=3, steps=10, seed=8))
    assert a[0].shape == (3, 5, FEATURES) and a[1].shape == (3, 5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert np.abs(a[0][0] - a[0][1]).max() > 1e-3  # the samples differ
    assert np.abs(a[0] - c[0]).max() > 1e-3


@pytest.mark.parametrize("guidance", [1.0, 2.0])
def test_permuting_the_classes_permutes_the_rows(generator, guidance):
    """With the initial noise permuted along with the classes (deterministic DDIM, η = 0)."""
    data = support(6, 1)
    order = np.array([3, 0, 5, 1, 4, 2])
    settings = SamplingSettings(samples=2, steps=8, guidance=guidance, seed=3)
    noise, _ = generator.initial_noise(2, 6, settings.seed)
    tokens, dataset = generator.condition(data)
    weight, bias = generator.decode(generator.sample_latents(tokens, dataset, settings, noise=noise), generator.basis(data))
    tokens_p, dataset_p = generator.condition([data[i] for i in order])
    permuted = [data[i] for i in order]
    weight_p, bias_p = generator.decode(generator.sample_latents(tokens_p, dataset_p, settings, noise=noise[:, order]),
                                        generator.basis(permuted))
    np.testing.assert_allclose(weight_p, weight[:, order], atol=1e-4)
    np.testing.assert_allclose(bias_p, bias[:, order], atol=1e-4)
    np.testing.assert_allclose(tokens_p.numpy(), tokens.numpy()[order], atol=1e-5)
    np.testing.assert_allclose(dataset_p.numpy(), dataset.numpy(), atol=1e-5)


def test_any_class_count_from_two_to_twenty_four(generator):
    for classes in (2, 11, 24):
        weight, bias = generator.generate(support(classes, classes), SamplingSettings(samples=1, steps=4))
        assert weight.shape == (1, classes, FEATURES)
        assert np.isfinite(weight).all() and np.isfinite(bias).all()


def test_a_batch_of_datasets_generates_what_separate_calls_do(generator):
    supports = [support(4, seed) for seed in (10, 11, 12)]
    for eta in (0.0, 0.7):
        settings = SamplingSettings(samples=2, steps=6, eta=eta, guidance=1.5, seed=0, temperature=0.8)
        weight, bias = generator.generate_batch(supports, settings, seeds=[5, 6, 7], chunk=4)
        assert weight.shape == (3, 2, 4, FEATURES)
        for b, seed in enumerate((5, 6, 7)):
            w, bb = generator.generate(supports[b], dataclasses.replace(settings, seed=seed))
            np.testing.assert_allclose(weight[b], w, atol=1e-4)
            np.testing.assert_allclose(bias[b], bb, atol=1e-4)
