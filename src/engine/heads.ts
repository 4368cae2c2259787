// Linear classifier heads on backbone features, and the baselines generated
// heads are measured against: nearest class mean and logistic regression
// trained on the support set. Features are L2-normalised first, as everywhere.

import type { NetworkWeights } from './sampling';

export interface Head {
  classes: number;
  dim: number;
  weight: Float32Array; // [classes, dim]
  bias: Float32Array; // [classes]
}

export interface LabelledFeatures {
  dim: number;
  /** [N, dim] row-major */
  features: Float32Array;
  labels: Int32Array;
}

/** A head family network (its `weight` [classes, dim] and `bias` tensors) as a Head. */
export function headOfNetwork(network: NetworkWeights, classes: number, dim: number): Head {
  const { weight, bias } = network;
  if (weight === undefined || bias === undefined) throw new Error('a head has weight and bias');
  return { classes, dim, weight: weight.data, bias: bias.data };
}

export function unitNormalise(features: Float32Array, dim: number): Float32Array {
  const out = new Float32Array(features.length);
  for (let r = 0; r < features.length / dim; r++) {
    let norm = 0;
    for (let j = 0; j < dim; j++) norm += features[r * dim + j]! ** 2;
    const scale = 1 / Math.max(Math.sqrt(norm), 1e-12);
    for (let j = 0; j < dim; j++) out[r * dim + j] = features[r * dim + j]! * scale;
  }
  return out;
}

/**
 * Dot products of every row of `a` [rowsA × dim] with every row of `b`
 * [rowsB × dim], as [rowsA × rowsB] float64. Four rows of `b` per pass share each
 * load of `a`'s row: about 2.5× a plain triple loop in V8 (float64 only, so that
 * the loads stay monomorphic). When `symmetric`
 * (a is b), only the upper triangle is computed and mirrored.
 */
export function rowProducts(
  a: Float64Array,
  rowsA: number,
  b: Float64Array,
  rowsB: number,
  dim: number,
  symmetric = false,
): Float64Array {
  const out = new Float64Array(rowsA * rowsB);
  for (let i = 0; i < rowsA; i++) {
    const ai = i * dim;
    let k = symmetric ? i : 0;
    for (; k + 3 < rowsB; k += 4) {
      const b0 = k * dim;
      const b1 = b0 + dim;
      const b2 = b1 + dim;
      const b3 = b2 + dim;
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      for (let j = 0; j < dim; j++) {
        const x = a[ai + j]!;
        s0 += x * b[b0 + j]!;
        s1 += x * b[b1 + j]!;
        s2 += x * b[b2 + j]!;
        s3 += x * b[b3 + j]!;
      }
      out[i * rowsB + k] = s0;
      out[i * rowsB + k + 1] = s1;
      out[i * rowsB + k + 2] = s2;
      out[i * rowsB + k + 3] = s3;
    }
    for (; k < rowsB; k++) {
      let s = 0;
      for (let j = 0; j < dim; j++) s += a[ai + j]! * b[k * dim + j]!;
      out[i * rowsB + k] = s;
    }
  }
  if (symmetric)
    for (let i = 0; i < rowsA; i++)
      for (let k = 0; k < i; k++) out[i * rowsB + k] = out[k * rowsB + i]!;
  return out;
}

/** Per-class feature matrices as one labelled, L2-normalised set. */
export function labelled(perClass: readonly Float32Array[], dim: number): LabelledFeatures {
  const rows = perClass.reduce((a, m) => a + m.length / dim, 0);
  const all = new Float32Array(rows * dim);
  const labels = new Int32Array(rows);
  let at = 0;
  perClass.forEach((m, c) => {
    all.set(m, at * dim);
    labels.fill(c, at, at + m.length / dim);
    at += m.length / dim;
  });
  return { dim, features: unitNormalise(all, dim), labels };
}

/** The Gram matrix K = X Xᵀ [n × n] of n feature rows (float64). */
export function gramMatrix(features: Float32Array, n: number, dim: number): Float64Array {
  const rows = Float64Array.from(features.subarray(0, n * dim));
  return rowProducts(rows, n, rows, n, dim, true);
}

/** Rows of `data` picked by index. */
export function subset(data: LabelledFeatures, rows: number[]): LabelledFeatures {
  const { dim } = data;
  const features = new Float32Array(rows.length * dim);
  rows.forEach((r, i) => features.set(data.features.subarray(r * dim, (r + 1) * dim), i * dim));
  return { dim, features, labels: Int32Array.from(rows.map((r) => data.labels[r]!)) };
}

/**
 * Stratified folds for cross-validation: each class's images dealt to `folds`
 * folds in turn, fewer when the smallest class has fewer images. Empty when
 * the smallest class has fewer than `minFolds`.
 */
export function stratifiedFolds(
  data: LabelledFeatures,
  classes: number,
  folds: number,
  minFolds = 2,
): { train: LabelledFeatures; validation: LabelledFeatures }[] {
  const perClass = Array.from({ length: classes }, (_, c) =>
    Array.from(data.labels.keys()).filter((i) => data.labels[i] === c),
  );
  const k = Math.min(folds, ...perClass.map((p) => p.length));
  if (k < minFolds) return [];
  return Array.from({ length: k }, (_, f) => ({
    train: subset(
      data,
      perClass.flatMap((p) => p.filter((_, i) => i % k !== f)),
    ),
    validation: subset(
      data,
      perClass.flatMap((p) => p.filter((_, i) => i % k === f)),
    ),
  }));
}

export function predict(head: Head, features: Float32Array): Int32Array {
  const { dim, classes } = head;
  const n = features.length / dim;
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let best = -Infinity;
    for (let c = 0; c < classes; c++) {
      let logit = head.bias[c]!;
      for (let j = 0; j < dim; j++) logit += head.weight[c * dim + j]! * features[i * dim + j]!;
      if (logit > best) {
        best = logit;
        out[i] = c;
      }
    }
  }
  return out;
}

export function accuracy(head: Head, data: LabelledFeatures): number {
  const predicted = predict(head, data.features);
  let right = 0;
  predicted.forEach((p, i) => (right += p === data.labels[i] ? 1 : 0));
  return right / predicted.length;
}

/** Nearest class mean (cosine) as a head: rows are the unit class means, biases 0. */
export function nearestClassMeanHead(support: LabelledFeatures, classes: number): Head {
  const { dim } = support;
  const weight = new Float32Array(classes * dim);
  support.labels.forEach((label, i) => {
    for (let j = 0; j < dim; j++) weight[label * dim + j]! += support.features[i * dim + j]!;
  });
  return { classes, dim, weight: unitNormalise(weight, dim), bias: new Float32Array(classes) };
}

/** A head drawn like the zoo's initialisation (N(0, std²) weights, zero biases). */
export function randomHead(classes: number, dim: number, normal: () => number, std = 0.01): Head {
  const weight = new Float32Array(classes * dim);
  for (let i = 0; i < weight.length; i++) weight[i] = normal() * std;
  return { classes, dim, weight, bias: new Float32Array(classes) };
}

/**
 * Multinomial logistic regression minimising C·Σ cross-entropy + ½‖W‖² (the
 * bias unpenalised, as in scikit-learn). The weights lie in the span of the
 * training features (representer theorem), so it is solved in the dual,
 * W = αᵀX, by gradient descent with momentum on α: N×N work per step instead of N×D.
 */
export function logisticRegression(
  support: LabelledFeatures,
  classes: number,
  c: number,
  iterations = 400,
): Head {
  const { dim, features, labels } = support;
  const n = labels.length;
  const gram = gramMatrix(features, n, dim);
  const alpha = new Float64Array(n * classes);
  const bias = new Float64Array(classes);
  const velocityA = new Float64Array(n * classes);
  const velocityB = new Float64Array(classes);
  // Step size from the objective's curvature: ‖K‖ (C/2 · ‖K‖ + 1) bounds it; ‖K‖ ≤ trace.
  let trace = 0;
  for (let i = 0; i < n; i++) trace += gram[i * n + i]!;
  const step = 1 / (trace * (c * trace * 0.5 + 1));
  const logits = new Float64Array(n * classes);
  const residual = new Float64Array(n * classes);
  for (let it = 0; it < iterations; it++) {
    // logits = K α + b
    for (let i = 0; i < n; i++)
      for (let k = 0; k < classes; k++) {
        let s = bias[k]!;
        for (let m = 0; m < n; m++) s += gram[i * n + m]! * alpha[m * classes + k]!;
        logits[i * classes + k] = s;
      }
    // residual = C (softmax − onehot)
    for (let i = 0; i < n; i++) {
      let max = -Infinity;
      for (let k = 0; k < classes; k++) max = Math.max(max, logits[i * classes + k]!);
      let total = 0;
      for (let k = 0; k < classes; k++) total += Math.exp(logits[i * classes + k]! - max);
      for (let k = 0; k < classes; k++) {
        const p = Math.exp(logits[i * classes + k]! - max) / total;
        residual[i * classes + k] = c * (p - (labels[i] === k ? 1 : 0));
      }
    }
    // In the dual, preconditioned by K⁻¹: the gradient direction is residual + α; the bias gets Σ residual.
    for (let i = 0; i < n * classes; i++) {
      velocityA[i] = 0.9 * velocityA[i]! - step * trace * (residual[i]! + alpha[i]!);
      alpha[i]! += velocityA[i]!;
    }
    for (let k = 0; k < classes; k++) {
      let g = 0;
      for (let i = 0; i < n; i++) g += residual[i * classes + k]!;
      velocityB[k] = 0.9 * velocityB[k]! - (step * trace * g) / n;
      bias[k]! += velocityB[k]!;
    }
  }
  const weight = new Float32Array(classes * dim);
  for (let i = 0; i < n; i++)
    for (let k = 0; k < classes; k++) {
      const a = alpha[i * classes + k]!;
      if (a === 0) continue;
      for (let j = 0; j < dim; j++) weight[k * dim + j]! += a * features[i * dim + j]!;
    }
  return { classes, dim, weight, bias: Float32Array.from(bias) };
}
