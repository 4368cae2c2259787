import { describe, expect, it } from 'vitest';
import { nodeTf } from '../node/tf-node';
import { accuracy, unitNormalise, type LabelledFeatures } from './heads';
import { Mulberry32 } from './rng';
import { trainHead } from './train-head';

function data(perClass: number, seed: number): LabelledFeatures {
  const rng = new Mulberry32(seed);
  const centres = [0, 1, 2].map(() =>
    Array.from({ length: 16 }, () => new Mulberry32(7).normal() + rng.normal()),
  );
  const rows: number[] = [];
  const labels: number[] = [];
  centres.forEach((centre, c) => {
    for (let k = 0; k < perClass; k++) {
      rows.push(...centre.map((v) => v + 0.5 * rng.normal()));
      labels.push(c);
    }
  });
  return {
    dim: 16,
    features: unitNormalise(Float32Array.from(rows), 16),
    labels: Int32Array.from(labels),
  };
}

describe('a head trained in the page with tfjs', () => {
  it('fits its support, says how long it took, and leaves no tensors behind', async () => {
    const { tf } = await nodeTf();
    const support = data(5, 1);
    const before = tf.memory().numTensors;
    const trained = await trainHead(tf, support, 3);
    expect(tf.memory().numTensors).toBe(before);
    expect(accuracy(trained.head, support)).toBe(1);
    expect(trained.trainMs).toBeGreaterThan(0);
    expect(trained.epochs).toBe(100);
  });
});
