// Fine-tuning heads in the page or in Node with tfjs: full-batch Adam on the
// mean cross-entropy of the support images' unit-norm features, from any
// start (generated, refined, pretrained, random), with the query accuracy
// measured before the first step and after each epoch. The factory draws the
// same curves (models/d2nwg/evaluate_head.py, finetune_curve) with the same
// settings, so the page's curves read like the report's.

import type * as tfTypes from '@tensorflow/tfjs';
import { accuracy, type Head, type LabelledFeatures } from './heads';
import { throwIfCancelled } from './progress';

/** The factory's fine-tuning settings (EvaluationConfig.finetune_epochs, finetune_lr). */
export const FINE_TUNING = { epochs: 10, learningRate: 0.01 } as const;

export interface FineTuneStart {
  /** What the curve is called ("generated", "random init", …). */
  name: string;
  /** One or more heads; the curve is their mean accuracy at each epoch. */
  heads: readonly Head[];
}

export interface FineTuneCurve {
  name: string;
  heads: number;
  /** Mean query accuracy over the heads after 0…epochs epochs. */
  accuracy: number[];
}

export interface FineTuneOptions {
  epochs?: number;
  learningRate?: number;
  signal?: AbortSignal;
  /** Called as each start's mean accuracy at an epoch becomes known. */
  onEpoch?: (name: string, epoch: number, accuracy: number) => void;
}

/** One head being fine-tuned: its tfjs variables and optimizer. */
interface Tuning {
  weight: tfTypes.Variable; // [dim, classes], so logits = x · weight + bias
  bias: tfTypes.Variable;
  optimizer: tfTypes.Optimizer;
}

function startTuning(tf: typeof tfTypes, head: Head, learningRate: number): Tuning {
  const { dim, classes } = head;
  const transposed = new Float32Array(dim * classes);
  for (let c = 0; c < classes; c++)
    for (let j = 0; j < dim; j++) transposed[j * classes + c] = head.weight[c * dim + j]!;
  const w = tf.tensor2d(transposed, [dim, classes]);
  const b = tf.tensor1d(Float32Array.from(head.bias));
  const tuning = {
    weight: tf.variable(w),
    bias: tf.variable(b),
    optimizer: tf.train.adam(learningRate),
  };
  tf.dispose([w, b]); // the variables keep their own copies
  return tuning;
}

async function headOf(t: Tuning, dim: number, classes: number): Promise<Head> {
  const w = (await t.weight.data()) as Float32Array;
  const weight = new Float32Array(classes * dim);
  for (let j = 0; j < dim; j++)
    for (let c = 0; c < classes; c++) weight[c * dim + j] = w[j * classes + c]!;
  return { classes, dim, weight, bias: Float32Array.from((await t.bias.data()) as Float32Array) };
}

/**
 * One curve per start (the mean over its heads), epoch by epoch: every head
 * takes an epoch before any takes the next, so `onEpoch` draws all curves
 * growing together.
 */
export async function fineTuneCurves(
  tf: typeof tfTypes,
  starts: readonly FineTuneStart[],
  support: LabelledFeatures,
  query: LabelledFeatures,
  {
    epochs = FINE_TUNING.epochs,
    learningRate = FINE_TUNING.learningRate,
    signal,
    onEpoch,
  }: FineTuneOptions = {},
): Promise<FineTuneCurve[]> {
  const { dim } = support;
  const classes = starts[0]?.heads[0]?.classes ?? 0;
  const n = support.labels.length;
  const x = tf.tensor2d(support.features, [n, dim]);
  const y = tf.tidy(() => tf.oneHot(tf.tensor1d(support.labels, 'int32'), classes));
  const tunings = starts.map((start) => start.heads.map((h) => startTuning(tf, h, learningRate)));
  const curves = starts.map(() => [] as number[]);
  try {
    for (let epoch = 0; ; epoch++) {
      for (const [s, start] of starts.entries()) {
        let sum = 0;
        for (const t of tunings[s]!) sum += accuracy(await headOf(t, dim, classes), query);
        curves[s]!.push(sum / start.heads.length);
        onEpoch?.(start.name, epoch, sum / start.heads.length);
      }
      throwIfCancelled(signal);
      await new Promise((resolve) => setTimeout(resolve, 0)); // let a cancel message in
      if (epoch === epochs) break;
      for (const t of tunings.flat())
        t.optimizer.minimize(() =>
          tf.losses.softmaxCrossEntropy(y, tf.add(tf.matMul(x, t.weight), t.bias)),
        );
    }
  } finally {
    tf.dispose([x, y]);
    for (const t of tunings.flat()) {
      tf.dispose([t.weight, t.bias]);
      t.optimizer.dispose();
    }
  }
  return starts.map((start, s) => ({
    name: start.name,
    heads: start.heads.length,
    accuracy: curves[s]!,
  }));
}
