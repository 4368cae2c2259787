"""The cnn generator's contract on an untrained generator (the properties hold for any weights):
tokens round-trip to the zoo's tensors, sampling is seeded, classes permute class rows only."""

import numpy as np
import pytest
import torch

from d2nwg.cnn_generator import CnnGenerator, CnnVae, CnnVaeConfig
from d2nwg.cnn_tokens import CHUNK, LAYOUTS, POSITIONS, CnnNorm
from d2nwg.ddim import NoiseSchedule
from d2nwg.denoiser import Denoiser, DenoiserConfig
from d2nwg.generation import SamplingSettings
from d2nwg.networks import ARCHS, get_arch, init_params, predict
from d2nwg.set_encoder import EncoderConfig, SetEncoder
from d2nwg.train_cnn import CnnGeneratorConfig, make_checkpoint

FEATURES = 48


def unit_norm() -> CnnNorm:
    return CnnNorm({arch: {name: (0.0, 1.0) for name, _ in get_arch(arch).layout()} for arch in ARCHS})


@pytest.fixture(scope="module")
def generator() -> CnnGenerator:
    torch.manual_seed(0)
    vae = CnnVae(CnnVaeConfig(latent_dim=8, hidden_dim=16, position_dim=4))
    torch.nn.init.normal_(vae.decoder.linear.weight, std=0.3)
    encoder = SetEncoder(EncoderConfig(feature_dim=FEATURES, dim=32, heads=4, inducing_points=0, latent_dim=8))
    denoiser = Denoiser(DenoiserConfig(latent_dim=8, condition_dim=32, dim=32, heads=4, layers=2, positions=POSITIONS))
    torch.nn.init.normal_(denoiser.latent_out.weight, std=0.1)
    torch.nn.init.normal_(denoiser.position, std=0.1)
    return CnnGenerator(make_checkpoint(CnnGeneratorConfig(), vae, encoder, denoiser, unit_norm(), 1.0,
                                        NoiseSchedule(train_steps=100), []))


def support(classes: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((int(rng.integers(1, 5)), FEATURES)).astype(np.float32) for _ in range(classes)]


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_tokens_hold_every_weight_and_give_it_back(arch):
    params = {k: v.numpy() for k, v in init_params(get_arch(arch), 3).items()}
    norm = CnnNorm({arch: {name: (0.01, 0.2) for name, _ in get_arch(arch).layout()}})
    tokens = norm.to_tokens(arch, params)
    assert tokens.shape == (LAYOUTS[arch].body_tokens + 10, CHUNK)
    assert int(LAYOUTS[arch].value_mask(10).sum()) == get_arch(arch).parameter_count()
    back = norm.to_params(arch, tokens)
    for name, value in params.items():
        np.testing.assert_allclose(back[name], value, atol=1e-6)
    x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
    np.testing.assert_allclose(predict(arch, back, x), predict(arch, params, x), atol=1e-5)


def test_same_seed_gives_the_same_cnn_and_another_seed_another(generator):
    data = support(10, 0)
    a = generator.generate("cnn-s", data, SamplingSettings(samples=2, steps=6, seed=4))
    b = generator.generate("cnn-s", data, SamplingSettings(samples=2, steps=6, seed=4))
    c = generator.generate("cnn-s", data, SamplingSettings(samples=2, steps=6, seed=5))
    assert len(a) == len(b) == 2
    assert {k: v.shape for k, v in a[0].items()} == {k: tuple(s) for k, s in get_arch("cnn-s").layout()}
    for net, again in zip(a, b):  # every sample, every tensor
        for name in net:
            np.testing.assert_array_equal(net[name], again[name])
    assert np.abs(a[0]["conv1.weight"] - a[1]["conv1.weight"]).max() > 1e-3  # the samples differ
    assert np.abs(a[0]["conv1.weight"] - c[0]["conv1.weight"]).max() > 1e-3


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_permuting_the_classes_permutes_the_last_layer_rows_and_keeps_the_body(generator, arch):
    """With the class rows' initial noise permuted along with the classes (deterministic DDIM)."""
    data = support(6, 1)
    order = np.array([3, 0, 5, 1, 4, 2])
    body = LAYOUTS[arch].body_tokens
    settings = SamplingSettings(samples=2, steps=6, guidance=1.5, seed=3)
    noise, _ = generator.initial_noise(arch, 2, 6, settings.seed)
    permuted_noise = np.concatenate([noise[:, :body], noise[:, body:][:, order]], axis=1)
    tokens, dataset = generator.condition(data)
    nets = generator.decode(arch, generator.sample_latents(arch, tokens, dataset, settings, noise=noise))
    tokens_p, dataset_p = generator.condition([data[i] for i in order])
    nets_p = generator.decode(arch, generator.sample_latents(arch, tokens_p, dataset_p, settings, noise=permuted_noise))
    head = LAYOUTS[arch].head_layer
    for net, net_p in zip(nets, nets_p):
        assert net[f"{head}.weight"].shape[0] == 6
        for name in net:
            expected = net[name][order] if name.startswith(head + ".") else net[name]
            np.testing.assert_allclose(net_p[name], expected, atol=1e-4)


def test_the_generated_cnn_classifies_any_class_count(generator):
    x = np.random.default_rng(1).random((3, 1, 28, 28), dtype=np.float32)
    for classes in (2, 10, 17):
        net = generator.generate("cnn-w", support(classes, classes), SamplingSettings(samples=1, steps=3))[0]
        assert predict("cnn-w", net, x).shape == (3, classes)


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_with_a_shared_start_the_body_tokens_are_the_change_from_the_base(arch):
    """A member's body tokens measure its change from the base (the base itself: zero change), the class
    rows stay weights, tokens give the weights back, and the exported decoder's offsets turn a
    decoded change back into weights through the plain de-normalisation the engine runs."""
    from d2nwg.export_cnn import DecoderGraph

    layer = get_arch(arch).dense[-1].name
    base = {k: v.numpy() for k, v in init_params(get_arch(arch), 1).items() if not k.startswith(layer + ".")}
    member = {k: v.numpy() for k, v in init_params(get_arch(arch), 2).items()}
    member.update({k: base[k] + 0.01 * np.sign(v) for k, v in base.items()})
    stats = {arch: {name: (0.003, 0.05) for name, _ in get_arch(arch).layout()}}
    norm = CnnNorm(stats, {arch: base})
    tokens = norm.to_tokens(arch, member)
    body = LAYOUTS[arch].body_tokens
    mask = LAYOUTS[arch].value_mask(10)
    change = tokens[:body][mask[:body] > 0] * 0.05 + 0.003
    np.testing.assert_allclose(np.abs(change), 0.01, atol=1e-6)
    back = norm.to_params(arch, tokens)
    for name, value in member.items():
        np.testing.assert_allclose(back[name], value, atol=1e-6)
    # The decoder graph's offsets: emitted token + base ÷ std, de-normalised without the base, is the weights.
    plain = CnnNorm(stats)
    shifted = tokens.copy()
    shifted[:body] += norm.base_tokens(arch)
    for name, value in plain.to_params(arch, shifted).items():
        np.testing.assert_allclose(value, member[name], atol=1e-5)
    graph = DecoderGraph(torch.nn.Identity(), norm)
    ids = torch.from_numpy(LAYOUTS[arch].position_ids(0))
    np.testing.assert_allclose(graph.offsets[ids].numpy(), norm.base_tokens(arch))


def test_support_images_set_each_class_row_from_the_generated_body(generator):
    """With images, every class row comes from the class means of the CNN's own penultimate features, so
    the CNN sorts the support images into their classes whatever the decoded rows said."""
    rng = np.random.default_rng(4)
    images = [np.clip(rng.normal(0.2 + 0.3 * c, 0.05, (5, 1, 28, 28)), 0, 1).astype(np.float32) for c in range(3)]
    nets = generator.generate("cnn-w", support(3, 3), SamplingSettings(samples=2, steps=3), images)
    x, y = np.concatenate(images), np.repeat(np.arange(3), 5)
    for net in nets:
        assert net["fc.weight"].shape == (3, 216)
        assert (predict("cnn-w", net, x).argmax(-1) == y).mean() == 1.0


def test_the_last_layer_refine_moves_the_class_means_toward_the_support(generator):
    """The MAP refine of the last layer (class means as prior mean) on overlapping classes: it picks a λ of
    its grid by cross-validation and fits the support images better than the class means alone."""
    from d2nwg.cnn_generator import LAST_LAYER_REFINE, refined_last_layer

    rng = np.random.default_rng(6)
    images = [np.clip(rng.normal(0.4 + 0.05 * c, 0.2, (6, 1, 28, 28)), 0, 1).astype(np.float32) for c in range(3)]
    net = generator.generate("cnn-w", support(3, 3), SamplingSettings(samples=1, steps=3), images)[0]
    refined, lam = refined_last_layer("cnn-w", net, images)
    assert lam in LAST_LAYER_REFINE.lambda_grid
    x, y = np.concatenate(images), np.repeat(np.arange(3), 6)

    def loss(params):
        logits = torch.from_numpy(predict("cnn-w", params, x))
        return float(torch.nn.functional.cross_entropy(logits, torch.from_numpy(y)))

    assert loss(refined) <= loss(net) + 1e-6
    assert {k for k in refined if not np.array_equal(refined[k], net[k])} <= {"fc.weight", "fc.bias"}
