"""The latent map's projection: the PCA the page applies to a sample's latents."""

import numpy as np

from d2nwg.latent_map import build_map


def test_projection_keeps_the_two_widest_directions_and_the_nearest_neighbour_scale():
    rng = np.random.default_rng(0)
    # Latents spread along two known directions of an 8-d space, plus small noise.
    basis = np.linalg.qr(rng.standard_normal((8, 8)))[0][:2]
    latents = rng.standard_normal((200, 2)) * [5.0, 2.0] @ basis + 0.01 * rng.standard_normal((200, 8))
    result = build_map(latents, tokens=150, seed=1)
    components = np.array(result["components"])
    # The components span the same plane as the generating directions.
    assert np.allclose(np.abs(np.linalg.svd(components @ basis.T)[1]), 1.0, atol=1e-3)
    assert result["explained_variance"][0] > result["explained_variance"][1] > 0.1
    # 150 of the 200 latents are kept, each one of the inputs (to 3 decimals).
    kept = np.array(result["latents"])
    assert kept.shape == (150, 8)
    assert np.abs(kept[:, None, :] - latents[None]).max(axis=2).min(axis=1).max() <= 5e-4
    # The nearest-neighbour scale is that of the kept set: smaller than the spread, above the noise.
    assert 0.01 < result["nearest_zoo_distance_median"] < 2.0
