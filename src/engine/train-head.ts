// A head trained on the spot with tfjs, the way Teachable Machine trains its
// classifier on frozen-backbone embeddings: a softmax layer on the support
// images' features, Adam, full batches. The baseline a visitor would otherwise
// reach for, timed, beside the generated heads (issue 15).

import type * as tfTypes from '@tensorflow/tfjs';
import type { Head, LabelledFeatures } from './heads';

export interface TrainedHead {
  head: Head;
  epochs: number;
  trainMs: number;
}

export const TRAINING = { epochs: 100, learningRate: 0.05 } as const;

/** Trains `weight`, `bias` from zero by Adam on the mean cross-entropy of the support. */
export async function trainHead(
  tf: typeof tfTypes,
  support: LabelledFeatures,
  classes: number,
  { epochs = TRAINING.epochs, learningRate = TRAINING.learningRate } = {},
): Promise<TrainedHead> {
  const started = performance.now();
  const { dim, features, labels } = support;
  const n = labels.length;
  const x = tf.tensor2d(features, [n, dim]);
  const y = tf.tidy(() => tf.oneHot(tf.tensor1d(labels, 'int32'), classes));
  const zeros = [tf.zeros([dim, classes]), tf.zeros([classes])] as const;
  const weight = tf.variable(zeros[0]);
  const bias = tf.variable(zeros[1]);
  tf.dispose([...zeros]); // the variables keep their own reference to the data
  const optimizer = tf.train.adam(learningRate);
  try {
    for (let epoch = 0; epoch < epochs; epoch++) {
      optimizer.minimize(() =>
        tf.losses.softmaxCrossEntropy(y, tf.add(tf.matMul(x, weight), bias)),
      );
    }
    const w = (await weight.data()) as Float32Array; // [dim, classes]
    const b = (await bias.data()) as Float32Array;
    const rows = new Float32Array(classes * dim);
    for (let j = 0; j < dim; j++)
      for (let c = 0; c < classes; c++) rows[c * dim + j] = w[j * classes + c]!;
    return {
      head: { classes, dim, weight: rows, bias: Float32Array.from(b) },
      epochs,
      trainMs: performance.now() - started,
    };
  } finally {
    tf.dispose([x, y, weight, bias]);
    optimizer.dispose();
  }
}
