"""The residual head prototype on synthetic supports: the reference head, the basis, the residual round
trip, and one DDIM run through an untrained denoiser (seconds; no cache)."""

import dataclasses

import numpy as np
import pytest
import torch

from d2nwg import residual_head as rh
from d2nwg.ddim import NoiseSchedule
from d2nwg.generation import SamplingSettings

DIM = 12


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def full_rank_stats(seed: int = 0) -> rh.SeenStatistics:
    """Statistics whose eigenvectors span the whole space, so A has a closed form to compare with."""
    rng = np.random.default_rng(seed)
    vectors, _ = np.linalg.qr(rng.standard_normal((DIM, DIM)))
    values = np.sort(rng.uniform(0.01, 1.0, DIM))[::-1]
    return rh.SeenStatistics(vectors.T.astype(np.float32), values.astype(np.float32),
                             rng.uniform(0.05, 1.0, DIM).astype(np.float32))


def synthetic_support(classes: int, shots: int, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, DIM)) * 3
    return [unit(c + 0.3 * rng.standard_normal((shots, DIM))) for c in centres]


def test_whitening_is_the_shrunk_inverse_covariance():
    stats = full_rank_stats()
    lam = 0.05
    covariance = stats.eigenvectors.T @ np.diag(stats.eigenvalues) @ stats.eigenvectors
    v = np.random.default_rng(2).standard_normal((3, DIM)).astype(np.float32)
    expected = lam * np.linalg.solve(covariance + lam * np.eye(DIM), v.T).T
    np.testing.assert_allclose(stats.whiten(v, lam), expected, rtol=1e-4, atol=1e-5)


def test_reference_head_is_shrunk_lda():
    stats = full_rank_stats()
    images = synthetic_support(4, 5)
    means = np.stack([x.mean(0) for x in images])
    lam, scale = 0.05, 7.0
    weight, bias = rh.reference_head(means, stats, lam, scale)
    centre = means.mean(0)
    covariance = stats.eigenvectors.T @ np.diag(stats.eigenvalues) @ stats.eigenvectors
    a = lam * np.linalg.inv(covariance + lam * np.eye(DIM))
    np.testing.assert_allclose(weight, scale * (means - centre) @ a.T, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bias, [-0.5 * scale * (m - centre) @ a @ (m + centre) for m in means], rtol=1e-4, atol=1e-4)
    # LDA decisions: argmax_c of −½ (x − μ_c)ᵀ A (x − μ_c) (the same A for every class)
    x = np.concatenate(images)
    distances = np.stack([np.einsum("nf,fg,ng->n", x - m, a, x - m) for m in means], 1)
    np.testing.assert_array_equal((x @ weight.T + bias).argmax(1), distances.argmin(1))


def test_gram_schmidt_orthonormal_and_drops_dependent_directions():
    rng = np.random.default_rng(3)
    v = rng.standard_normal((2, 4, DIM)).astype(np.float32)
    v[:, 2] = 2 * v[:, 0] - v[:, 1]  # dependent on the first two
    q, factors = rh.gram_schmidt(v)
    np.testing.assert_allclose(q[:, 2], 0.0)
    gram = np.einsum("ckf,cjf->ckj", q, q)
    np.testing.assert_allclose(gram, np.diag([1.0, 1.0, 0.0, 1.0])[None].repeat(2, 0), atol=1e-5)
    np.testing.assert_allclose(np.diagonal(factors, axis1=1, axis2=2)[:, [0, 1, 3]] > 0, True)


@pytest.mark.parametrize("shots", [1, 3])
def test_residual_round_trip(shots):
    stats = full_rank_stats()
    config = rh.ResidualConfig(whitening_rank=DIM, shrinkage=0.05, global_rank=2)
    images = synthetic_support(3, shots)
    support = rh.build_support(images, stats, config, scale=5.0)
    classes, k, _ = support.basis.shape
    assert k == 2 + len(config.basis)
    scale = rh.ResidualScale(np.linspace(0.5, 2.0, k).astype(np.float32), 0.3)
    live = np.linalg.norm(support.basis, axis=-1) > 0  # [C, K]: the zero rows (e.g. no pc below 2 images)
    if shots == 1:
        assert not live[:, -3:-1].any()  # pc1, pc2
    rng = np.random.default_rng(4)
    coords = rng.standard_normal((2, classes, k + 1)).astype(np.float32)
    coords[..., :-1] *= live
    weight, bias = rh.decode_residual(coords, support, scale)
    np.testing.assert_allclose(rh.encode_residual(weight, bias, support, scale), coords, atol=2e-4)
    # A head in the reference's span plus the basis comes back exactly; any head comes back as its projection.
    head_w = rng.standard_normal((classes, DIM)).astype(np.float32)
    head_b = rng.standard_normal(classes).astype(np.float32)
    back_w, back_b = rh.decode_residual(rh.encode_residual(head_w, head_b, support, scale), support, scale)
    projection = support.weight + np.einsum("ck,ckf->cf", np.einsum("cf,ckf->ck", head_w - support.weight, support.basis),
                                            support.basis)
    np.testing.assert_allclose(back_w, projection, atol=1e-4)
    np.testing.assert_allclose(back_b, head_b, atol=1e-5)
    # the reference head itself is residual 0
    np.testing.assert_allclose(rh.encode_residual(support.weight, support.bias, support, scale), 0.0, atol=1e-5)


def test_untrained_denoiser_samples_heads():
    torch.manual_seed(0)
    stats = full_rank_stats()
    config = rh.ResidualConfig(whitening_rank=DIM, shrinkage=0.05, global_rank=2, hidden=16, image_hidden=8, blocks=1)
    support = rh.build_support(synthetic_support(3, 2), stats, config, scale=5.0)
    dim = support.basis.shape[1] + 1
    for prediction in ("x0", "eps"):
        model = rh.ResidualDenoiser(rh.DenoiserShape(dim, support.image_features.shape[-1], support.class_features.shape[-1],
                                                     16, 8, 1, prediction))
        torch.nn.init.normal_(model.output.weight, std=0.1)  # zero-initialised output would make this trivial
        generator = rh.ResidualGenerator(model.eval(), stats, config, 5.0, rh.ResidualScale(np.ones(dim - 1, np.float32), 1.0),
                                         NoiseSchedule(train_steps=100), "full")
        x_T = np.random.default_rng(5).standard_normal((4, 3, dim))
        coords = generator.sample(support, x_T, steps=10)
        assert coords.shape == (4, 3, dim) and np.isfinite(coords).all()
        weight, bias = generator.heads(coords, support)
        assert weight.shape == (4, 3, DIM) and bias.shape == (4, 3)


@pytest.fixture(scope="module")
def generator() -> rh.ResidualGenerator:
    """An untrained generator with a non-zero output layer: what the sampler does, not what it learnt."""
    torch.manual_seed(0)
    stats = full_rank_stats()
    config = rh.ResidualConfig(whitening_rank=DIM, shrinkage=0.05, global_rank=2, hidden=16, image_hidden=8, blocks=1)
    probe = rh.build_support(synthetic_support(3, 2), stats, config, scale=5.0)
    dim = probe.basis.shape[1] + 1
    model = rh.ResidualDenoiser(rh.DenoiserShape(dim, probe.image_features.shape[-1], probe.class_features.shape[-1],
                                                 16, 8, 1, "eps"))
    torch.nn.init.normal_(model.output.weight, std=0.1)
    return rh.ResidualGenerator(model.eval(), stats, config, 5.0, rh.ResidualScale(np.ones(dim - 1, np.float32), 1.0),
                                NoiseSchedule(train_steps=100), "full")


def test_same_seed_gives_the_same_heads_and_another_seed_other_heads(generator):
    support = synthetic_support(3, 2)
    settings = SamplingSettings(samples=2, steps=5, eta=0.5, temperature=1.0)
    a = generator.generate_batch([support], settings, [1])
    b = generator.generate_batch([support], settings, [1])
    c = generator.generate_batch([support], settings, [2])
    np.testing.assert_array_equal(a[0], b[0])
    assert np.abs(a[0] - c[0]).max() > 1e-4
    with pytest.raises(ValueError, match="guidance must be 1"):
        generator.generate_batch([support], dataclasses.replace(settings, guidance=2.0), [1])


def test_permuting_the_classes_permutes_the_rows(generator):
    support = synthetic_support(4, 3)
    settings = SamplingSettings(samples=1, steps=5, temperature=0.0)  # zero noise permutes trivially
    order = [2, 0, 3, 1]
    a, _ = generator.generate_batch([support], settings, [0])
    b, _ = generator.generate_batch([[support[i] for i in order]], settings, [0])
    np.testing.assert_allclose(b[0, 0], a[0, 0, order], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("classes", [2, 24])
def test_any_class_count_and_uneven_images(generator, classes):
    support = [x[: 1 + c % 4] for c, x in enumerate(synthetic_support(classes, 4, seed=classes))]
    weight, bias = generator.generate_batch([support], SamplingSettings(samples=2, steps=3), [0])
    assert weight.shape == (1, 2, classes, DIM) and bias.shape == (1, 2, classes)
    assert np.isfinite(weight).all() and np.isfinite(bias).all()


def test_a_batch_of_supports_generates_what_separate_calls_do(generator):
    supports = [synthetic_support(3, 2, seed=s) for s in (1, 2, 3)]
    settings = SamplingSettings(samples=2, steps=4, eta=0.5, temperature=0.7)
    batch, batch_b = generator.generate_batch(supports, settings, [5, 6, 7])
    for i, (support, seed) in enumerate(zip(supports, [5, 6, 7])):
        alone, alone_b = generator.generate_batch([support], settings, [seed])
        np.testing.assert_allclose(batch[i], alone[0], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(batch_b[i], alone_b[0], rtol=1e-5, atol=1e-5)
