// Scheduler math only (after diffusers' scheduling_ddim.py): the noise schedule
// and the DDIM update, no model, no runtime. Equations numbered as in DDIM
// (Song, Meng & Ermon, ICLR 2021); models/d2nwg/ddim.py is the same arithmetic.

import type { Mulberry32 } from './rng';

export const BETA_SCHEDULES = ['linear', 'scaled_linear', 'cosine'] as const;
export type BetaSchedule = (typeof BETA_SCHEDULES)[number];

export interface NoiseScheduleConfig {
  train_steps: number;
  beta_schedule: BetaSchedule;
  beta_start: number;
  beta_end: number;
}

export interface DdimStep {
  prevSample: Float64Array;
  predX0: Float64Array;
}

function linspace(start: number, end: number, count: number): number[] {
  // numpy.linspace: start + i·step, and exactly `end` last.
  const step = (end - start) / (count - 1);
  return Array.from({ length: count }, (_, i) => (i === count - 1 ? end : start + i * step));
}

export function alphasCumprod(config: NoiseScheduleConfig): Float64Array {
  const T = config.train_steps;
  let betas: number[];
  switch (config.beta_schedule) {
    case 'linear':
      betas = linspace(config.beta_start, config.beta_end, T);
      break;
    case 'scaled_linear':
      betas = linspace(Math.sqrt(config.beta_start), Math.sqrt(config.beta_end), T).map(
        (b) => b * b,
      );
      break;
    case 'cosine': {
      // Nichol & Dhariwal 2021, s = 0.008, β clipped at 0.999.
      const f = Array.from(
        { length: T + 1 },
        (_, i) => Math.cos(((i / T + 0.008) / 1.008) * (Math.PI / 2)) ** 2,
      );
      betas = Array.from({ length: T }, (_, i) => Math.min(1 - f[i + 1]! / f[i]!, 0.999));
      break;
    }
    default:
      throw new Error(
        `unknown beta_schedule "${String(config.beta_schedule)}"; choose one of ${BETA_SCHEDULES.join(', ')}`,
      );
  }
  const out = new Float64Array(T);
  let product = 1;
  betas.forEach((beta, t) => (out[t] = product *= 1 - beta)); // ᾱ_t = ∏_{s≤t} (1 − β_s)
  return out;
}

export class DdimScheduler {
  readonly alphasCumprod: Float64Array;
  private numSteps: number | null = null;
  private visited: number[] = [];

  constructor(readonly config: NoiseScheduleConfig) {
    this.alphasCumprod = alphasCumprod(config);
  }

  /** Chooses `steps` evenly spaced timesteps, descending ("leading" spacing). */
  setTimesteps(steps: number): void {
    const T = this.config.train_steps;
    if (!Number.isInteger(steps) || steps < 1 || steps > T) {
      throw new Error(`steps must be an integer in 1..${T}, got ${steps}`);
    }
    const ratio = Math.floor(T / steps);
    this.numSteps = steps;
    this.visited = Array.from({ length: steps }, (_, i) => (steps - 1 - i) * ratio);
  }

  get timesteps(): readonly number[] {
    return this.visited;
  }

  /** One DDIM update from timestep `t` given the model's ε; noise (η > 0) comes from `rng`. */
  step(
    eps: ArrayLike<number>,
    t: number,
    x: ArrayLike<number>,
    { eta = 0, rng }: { eta?: number; rng?: Mulberry32 } = {},
  ): DdimStep {
    if (this.numSteps === null) throw new Error('call setTimesteps before step');
    if (eps.length !== x.length) throw new Error(`ε has ${eps.length} values, x has ${x.length}`);
    const prevT = t - Math.floor(this.config.train_steps / this.numSteps);
    const aT = this.alphasCumprod[t];
    if (aT === undefined)
      throw new Error(`timestep ${t} is outside 0..${this.config.train_steps - 1}`);
    const aPrev = prevT >= 0 ? this.alphasCumprod[prevT]! : 1; // the last step lands on x_0
    const sigma = eta * Math.sqrt((1 - aPrev) / (1 - aT)) * Math.sqrt(1 - aT / aPrev); // (16)
    const direction = Math.sqrt(Math.max(1 - aPrev - sigma * sigma, 0));
    if (sigma > 0 && rng === undefined) throw new Error('eta > 0 needs a random source');
    const noise = sigma > 0 ? rng!.normals(x.length) : null;
    const predX0 = new Float64Array(x.length);
    const prevSample = new Float64Array(x.length);
    for (let i = 0; i < x.length; i++) {
      predX0[i] = (x[i]! - Math.sqrt(1 - aT) * eps[i]!) / Math.sqrt(aT); // (12), x̂_0
      prevSample[i] = Math.sqrt(aPrev) * predX0[i]! + direction * eps[i]!; // (12), x_prev
      if (noise !== null) prevSample[i]! += sigma * noise[i]!;
    }
    return { prevSample, predX0 };
  }
}
