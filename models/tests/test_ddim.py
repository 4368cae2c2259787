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


class CountingEps:
    """A synthetic ε that remembers what the sampler asked: ε_c = 0.3 x, ε_∅ = −0.2 x + 0.01 t."""

    def __init__(self):
        self.calls: list[tuple[int, np.ndarray]] = []

    def __call__(self, x: np.ndarray, t: int, condition_scale: np.ndarray) -> np.ndarray:
        self.calls.append((len(x), condition_scale.copy()))
        s = condition_scale.astype(np.float64).reshape((-1,) + (1,) * (x.ndim - 1))
        return s * 0.3 * x + (1 - s) * (-0.2 * x + 0.01 * t)


def test_guidance_one_runs_only_the_conditional_half_and_other_values_both_in_one_call():
    schedule = ddim.NoiseSchedule(train_steps=100)
    x_T = Mulberry32(1).normals(3 * 4).reshape(3, 4)
    plain = CountingEps()
    ddim.sample_guided(schedule, x_T, plain, 5, 0.0, 1.0, None)
    assert [rows for rows, _ in plain.calls] == [3] * 5
    assert all((scale == 1).all() for _, scale in plain.calls)
    guided = CountingEps()
    steps: list[ddim.GuidedStep] = []
    ddim.sample_guided(schedule, x_T, guided, 5, 0.0, 2.5, None, record=steps.append)
    assert [rows for rows, _ in guided.calls] == [6] * 5
    assert guided.calls[0][1].tolist() == [1, 1, 1, 0, 0, 0]
    for step in steps:
        np.testing.assert_array_equal(step.eps_conditional, 0.3 * step.sample)
        np.testing.assert_allclose(step.eps_unconditional, -0.2 * step.sample + 0.01 * step.t)
        np.testing.assert_allclose(step.eps, step.eps_unconditional + 2.5 * (step.eps_conditional - step.eps_unconditional))


def test_the_record_hook_sees_every_update_of_the_run_it_returns():
    schedule = ddim.NoiseSchedule(train_steps=100)
    x_T = Mulberry32(2).normals(2 * 3).reshape(2, 3)
    steps: list[ddim.GuidedStep] = []
    x_0 = ddim.sample_guided(schedule, x_T, CountingEps(), 4, 0.5, 1.5, Mulberry32(9), record=steps.append)
    unrecorded = ddim.sample_guided(schedule, x_T, CountingEps(), 4, 0.5, 1.5, Mulberry32(9))
    assert [s.t for s in steps] == ddim.timesteps(schedule, 4).tolist()
    np.testing.assert_array_equal(steps[0].sample, x_T)
    for before, after in zip(steps, steps[1:]):
        np.testing.assert_array_equal(after.sample, before.prev_sample)
    for step in steps:  # each recorded update is exactly one ddim_step of the recorded ε
        x0 = (step.sample - np.sqrt(1 - schedule.alphas_cumprod()[step.t]) * step.eps) / np.sqrt(schedule.alphas_cumprod()[step.t])
        np.testing.assert_allclose(step.pred_x0, x0, rtol=1e-12)
    np.testing.assert_array_equal(steps[-1].prev_sample, x_0)
    np.testing.assert_array_equal(unrecorded, x_0)


def test_a_list_of_sources_draws_for_each_group_what_a_separate_run_draws():
    schedule = ddim.NoiseSchedule(train_steps=100)
    x_T = Mulberry32(3).normals(4 * 3).reshape(4, 3)
    together = ddim.sample_guided(schedule, x_T, CountingEps(), 5, 0.8, 1.5, [Mulberry32(5), Mulberry32(6)])
    for group, seed in enumerate((5, 6)):
        alone = ddim.sample_guided(schedule, x_T[2 * group : 2 * group + 2], CountingEps(), 5, 0.8, 1.5, Mulberry32(seed))
        np.testing.assert_allclose(together[2 * group : 2 * group + 2], alone, rtol=1e-12)
    assert np.abs(together[:2] - together[2:]).max() > 1e-3  # the streams differ


def test_from_t_runs_only_the_later_steps():
    schedule = ddim.NoiseSchedule(train_steps=100)
    x_t = Mulberry32(4).normals(3).reshape(1, 3)
    steps: list[ddim.GuidedStep] = []
    ddim.sample_guided(schedule, x_t, CountingEps(), 10, 0.0, 1.0, None, record=steps.append, from_t=45)
    assert [s.t for s in steps] == [40, 30, 20, 10, 0]
