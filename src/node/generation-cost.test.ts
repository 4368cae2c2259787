import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { generationCost } from './generation-cost';

const headDir = fileURLToPath(new URL('../../models/release/head/', import.meta.url));

describe('the arithmetic of a head generation', () => {
  it('counts each stage once per call: one encoder, one denoiser per step, one decoder', async () => {
    const stages = await generationCost('head', headDir, {
      classes: 3,
      images: 4,
      samples: 2,
      steps: 3,
    });
    expect(stages.map((s) => [s.stage, s.calls])).toEqual([
      ['encode', 1],
      ['denoise', 3],
      ['decode', 1],
    ]);
    for (const s of stages) {
      expect(s.multiplyAdds).toBeGreaterThan(0);
      expect(s.uncounted).toEqual([]);
    }
    // The denoiser's rows are samples × classes: twice the samples, twice the arithmetic.
    const twice = await generationCost('head', headDir, {
      classes: 3,
      images: 4,
      samples: 4,
      steps: 3,
    });
    expect(twice[1]!.multiplyAdds).toBe(2 * stages[1]!.multiplyAdds);
  });
});
