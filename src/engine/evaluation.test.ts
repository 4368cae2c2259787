import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { chooseC, featureBaselines, LOGISTIC, spread } from './evaluation';
import { labelled } from './heads';
import { Mulberry32 } from './rng';

/** Two well-separated classes of `perClass` noisy points around ±e₀ in 8 dimensions. */
function twoClasses(perClass: number, seed: number): Float32Array[] {
  const rng = new Mulberry32(seed);
  return [1, -1].map((sign) =>
    Float32Array.from(
      { length: perClass * 8 },
      (_, i) => (i % 8 === 0 ? sign : 0) + 0.3 * rng.normal(),
    ),
  );
}

describe('evaluation baselines', () => {
  it('uses the logistic-regression settings the factory recorded in its baseline table', () => {
    const table = JSON.parse(
      readFileSync(new URL('../../models/data/baselines.json', import.meta.url), 'utf8'),
    ) as { config: { c_grid: number[]; cv_folds: number }; one_shot_c: number };
    expect(LOGISTIC.cGrid).toEqual(table.config.c_grid);
    expect(LOGISTIC.cvFolds).toBe(table.config.cv_folds);
    expect(LOGISTIC.oneShotC).toBe(table.one_shot_c);
  });

  it('takes the factory 1-shot C when a class has one image, and a grid value otherwise', () => {
    expect(chooseC(labelled(twoClasses(1, 1), 8), 2)).toBe(LOGISTIC.oneShotC);
    const c = chooseC(labelled(twoClasses(6, 2), 8), 2);
    expect(LOGISTIC.cGrid).toContain(c);
  });

  it('separates two easy classes with both baselines', () => {
    const support = labelled(twoClasses(5, 3), 8);
    const query = labelled(twoClasses(20, 4), 8);
    const { nearestClassMean, logisticRegression } = featureBaselines(support, query, 2);
    expect(nearestClassMean).toBeGreaterThan(0.9);
    expect(logisticRegression.accuracy).toBeGreaterThan(0.9);
  });

  it('reports mean and spread over all values', () => {
    expect(spread([0.5, 1])).toEqual({ count: 2, values: [0.5, 1], mean: 0.75, std: 0.25 });
  });
});
