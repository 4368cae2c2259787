import numpy as np
import pytest

from d2nwg import ddim
from d2nwg.rng import Mulberry32


def test_timesteps_are_evenly_spaced_and_descending():
    assert ddim.timesteps(ddim.NoiseSchedule(), 4).tolist() == [750, 500, 250, 0]
    with pytest.raises(ValueError, match="1..1000"):
        ddim.timesteps(ddim.NoiseSchedule(), 0)


def test_alphas_cumprod_decrease_from_near_one_for_every_schedule():
    for name in ddim.BETA_SCHEDULES:
        a = ddim.NoiseSchedule(beta_schedule=name).alphas_cumprod()
        assert a[0] > 0.99 and a[-1] < 0.05 and np.all(np.diff(a) < 0), name


def test_unknown_schedule_names_the_choices():
    with pytest.raises(ValueError, match="linear.*scaled_linear.*cosine"):
        ddim.NoiseSchedule(beta_schedule="quadratic").alphas_cumprod()


def test_with_the_true_noise_one_deterministic_step_recovers_x0():
    schedule = ddim.NoiseSchedule()
    x0 = np.array([0.5, -1.0, 2.0])
    noise = np.array([0.1, 0.3, -0.2])
    t = 600
    x_t = ddim.add_noise(schedule, x0[None], noise[None], np.array([t]))[0]
    _, pred_x0 = ddim.ddim_step(schedule, 1000 // 400, noise, t, x_t, eta=0.0, rng=None)
    np.testing.assert_allclose(pred_x0, x0, atol=1e-12)


def test_eta_adds_seeded_noise():
    schedule = ddim.NoiseSchedule()
    x = np.zeros(4)
    a, _ = ddim.ddim_step(schedule, 10, x, 500, x, eta=1.0, rng=Mulberry32(5))
    b, _ = ddim.ddim_step(schedule, 10, x, 500, x, eta=1.0, rng=Mulberry32(5))
    c, _ = ddim.ddim_step(schedule, 10, x, 500, x, eta=0.0, rng=None)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a).sum() > 0 and np.abs(c).sum() == 0


def test_committed_traces_are_what_the_factory_records_today():
    import json

    from d2nwg.config import MODELS_DIR
    from d2nwg.export_fixtures import ddim_traces

    committed = json.loads((MODELS_DIR / "fixtures" / "ddim-trace.json").read_text())
    assert committed == json.loads(json.dumps(ddim_traces()))
