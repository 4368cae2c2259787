import { describe, expect, it } from 'vitest';
import { nodeTf } from '../node/tf-node';
import { fineTuneCurves, FINE_TUNING } from './fine-tune';
import {
  accuracy,
  nearestClassMeanHead,
  unitNormalise,
  type Head,
  type LabelledFeatures,
} from './heads';
import { GenerationCancelled } from './progress';
import { Mulberry32 } from './rng';

const DIM = 16;

/** 3 classes around fixed centres; `seed` draws the points. */
function data(perClass: number, seed: number): LabelledFeatures {
  const rng = new Mulberry32(seed);
  const centres = [0, 1, 2].map((c) => {
    const r = new Mulberry32(100 + c);
    return Array.from({ length: DIM }, () => r.normal());
  });
  const rows: number[] = [];
  const labels: number[] = [];
  centres.forEach((centre, c) => {
    for (let k = 0; k < perClass; k++) {
      rows.push(...centre.map((v) => v + 0.9 * rng.normal()));
      labels.push(c);
    }
  });
  return {
    dim: DIM,
    features: unitNormalise(Float32Array.from(rows), DIM),
    labels: Int32Array.from(labels),
  };
}

/** A head whose rows point at the wrong classes: each class's row is the next class's mean. */
function rotated(head: Head, scale: number): Head {
  const { classes, dim } = head;
  const weight = new Float32Array(classes * dim);
  for (let c = 0; c < classes; c++)
    for (let j = 0; j < dim; j++)
      weight[c * dim + j] = scale * head.weight[((c + 1) % classes) * dim + j]!;
  return { classes, dim, weight, bias: new Float32Array(classes) };
}

describe('fine-tuning heads in the page with tfjs', () => {
  it('draws one curve per start, epoch by epoch, from the start’s own accuracy upward', async () => {
    const { tf } = await nodeTf();
    const support = data(8, 1);
    const query = data(20, 2);
    const good = nearestClassMeanHead(support, 3);
    const wrong = rotated(good, 3);
    const before = tf.memory().numTensors;
    const seen: string[] = [];
    const curves = await fineTuneCurves(
      tf,
      [
        { name: 'good', heads: [good] },
        { name: 'wrong', heads: [wrong, rotated(good, 2)] },
      ],
      support,
      query,
      { learningRate: 0.1, onEpoch: (name, epoch) => seen.push(`${name}@${epoch}`) },
    );
    expect(tf.memory().numTensors).toBe(before);
    expect(curves.map((c) => [c.name, c.heads, c.accuracy.length])).toEqual([
      ['good', 1, FINE_TUNING.epochs + 1],
      ['wrong', 2, FINE_TUNING.epochs + 1],
    ]);
    // Epoch 0 is each start as given; the wrong heads recover by fine-tuning on the support.
    expect(curves[0]!.accuracy[0]).toBeCloseTo(accuracy(good, query), 12);
    expect(curves[1]!.accuracy[0]).toBeCloseTo(
      (accuracy(wrong, query) + accuracy(rotated(good, 2), query)) / 2,
      12,
    );
    expect(curves[1]!.accuracy[0]).toBeLessThan(0.2);
    expect(curves[1]!.accuracy.at(-1)).toBeGreaterThan(0.8);
    // Every start's point at an epoch comes before any start's next epoch: curves grow together.
    expect(seen.slice(0, 4)).toEqual(['good@0', 'wrong@0', 'good@1', 'wrong@1']);
  });

  it('stops when cancelled and leaves no tensors behind', async () => {
    const { tf } = await nodeTf();
    const support = data(4, 3);
    const before = tf.memory().numTensors;
    const controller = new AbortController();
    const run = fineTuneCurves(
      tf,
      [{ name: 'ncm', heads: [nearestClassMeanHead(support, 3)] }],
      support,
      support,
      {
        signal: controller.signal,
        onEpoch: (_, epoch) => epoch === 2 && controller.abort(),
      },
    );
    await expect(run).rejects.toBeInstanceOf(GenerationCancelled);
    expect(tf.memory().numTensors).toBe(before);
  });
});
