import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { maxAbsDifference } from './compare';
import { DdimScheduler, type NoiseScheduleConfig } from './ddim';
import { Mulberry32 } from './rng';

interface Trace {
  schedule: NoiseScheduleConfig;
  steps: number;
  eta: number;
  seed: number;
  shape: number[];
  initial: number[];
  trace: { t: number; eps: number[]; prev_sample: number[]; pred_x0: number[] }[];
}

const traces = JSON.parse(
  readFileSync(
    fileURLToPath(new URL('../../models/fixtures/ddim-trace.json', import.meta.url)),
    'utf8',
  ),
) as Trace[];

// float64 on both sides; only libm vs V8 transcendental functions (cos in the
// cosine schedule, log/sin/cos in the noise) can differ, by ulps.
const TOLERANCE = 1e-12;

describe('DdimScheduler replays the factory’s recorded runs', () => {
  for (const run of traces) {
    it(`${run.schedule.beta_schedule}, ${run.steps} steps, η = ${run.eta}`, () => {
      const scheduler = new DdimScheduler(run.schedule);
      scheduler.setTimesteps(run.steps);
      expect(scheduler.timesteps).toEqual(run.trace.map((s) => s.t));
      const rng = new Mulberry32(run.seed);
      let x: ArrayLike<number> = rng.normals(run.initial.length);
      expect(maxAbsDifference(x, run.initial)).toBeLessThan(TOLERANCE);
      for (const recorded of run.trace) {
        const { prevSample, predX0 } = scheduler.step(recorded.eps, recorded.t, x, {
          eta: run.eta,
          rng,
        });
        expect(maxAbsDifference(predX0, recorded.pred_x0)).toBeLessThan(TOLERANCE);
        expect(maxAbsDifference(prevSample, recorded.prev_sample)).toBeLessThan(TOLERANCE);
        x = prevSample;
      }
    });
  }
});

describe('DdimScheduler guards', () => {
  const config: NoiseScheduleConfig = {
    train_steps: 1000,
    beta_schedule: 'linear',
    beta_start: 1e-4,
    beta_end: 2e-2,
  };

  it('refuses to step before setTimesteps', () => {
    expect(() => new DdimScheduler(config).step([0], 999, [0])).toThrow(
      'call setTimesteps before step',
    );
  });

  it('names the allowed schedules for an unknown one', () => {
    expect(() => new DdimScheduler({ ...config, beta_schedule: 'quadratic' as 'linear' })).toThrow(
      'unknown beta_schedule "quadratic"; choose one of linear, scaled_linear, cosine',
    );
  });

  it('refuses a step count outside the training schedule', () => {
    expect(() => new DdimScheduler(config).setTimesteps(0)).toThrow(
      'steps must be an integer in 1..1000',
    );
  });

  it('needs a random source when η > 0', () => {
    const scheduler = new DdimScheduler(config);
    scheduler.setTimesteps(10);
    expect(() => scheduler.step([0], 900, [0], { eta: 1 })).toThrow(
      'eta > 0 needs a random source',
    );
  });
});

describe('Mulberry32', () => {
  it('gives the factory’s uniforms for a seed', () => {
    // models/d2nwg/rng.py: Mulberry32(42).uniform() three times.
    const rng = new Mulberry32(42);
    expect([rng.uniform(), rng.uniform(), rng.uniform()]).toEqual([
      0.6011037519201636, 0.44829055899754167, 0.8524657934904099,
    ]);
  });
});
