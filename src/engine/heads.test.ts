import { describe, expect, it } from 'vitest';
import {
  accuracy,
  logisticRegression,
  nearestClassMeanHead,
  unitNormalise,
  type LabelledFeatures,
} from './heads';
import { Mulberry32 } from './rng';

/** Classes around random centres; `spread` scales the within-class noise. */
function blobs(
  classes: number,
  perClass: number,
  dim: number,
  spread: number,
  seed: number,
): LabelledFeatures {
  const rng = new Mulberry32(seed);
  const centres = Array.from({ length: classes }, () =>
    Float32Array.from({ length: dim }, () => rng.normal()),
  );
  const features = new Float32Array(classes * perClass * dim);
  const labels = new Int32Array(classes * perClass);
  for (let c = 0; c < classes; c++)
    for (let k = 0; k < perClass; k++) {
      const row = c * perClass + k;
      labels[row] = c;
      for (let j = 0; j < dim; j++)
        features[row * dim + j] = centres[c]![j]! + spread * rng.normal();
    }
  return { dim, features: unitNormalise(features, dim), labels };
}

describe('baseline heads', () => {
  it('nearest class mean and logistic regression separate well-separated classes', () => {
    const train = blobs(4, 10, 32, 0.3, 1);
    const test = blobs(4, 10, 32, 0.3, 1); // same centres (same seed), same draw: training accuracy
    expect(accuracy(nearestClassMeanHead(train, 4), test)).toBe(1);
    expect(accuracy(logisticRegression(train, 4, 100), test)).toBe(1);
  });

  it('logistic regression fits its training set where nearest class mean cannot', () => {
    // Heavy within-class noise: class means alone misclassify training points; a weakly
    // regularised logistic regression (C = 1000) in 64 dimensions separates 60 points.
    const train = blobs(3, 20, 64, 8, 2);
    const ncm = accuracy(nearestClassMeanHead(train, 3), train);
    const lr = accuracy(logisticRegression(train, 3, 1000, 600), train);
    expect(ncm).toBeLessThan(0.95);
    expect(lr).toBeGreaterThan(ncm);
    expect(lr).toBeGreaterThanOrEqual(0.95);
  });
});
