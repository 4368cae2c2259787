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

export function dot(
  a: Float64Array,
  aAt: number,
  b: Float64Array,
  bAt: number,
  dim: number,
): number {
  // Four partial sums: the additions of one chain wait on each other, four chains overlap.
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let f = 0;
  for (; f + 3 < dim; f += 4) {
    s0 += a[aAt + f]! * b[bAt + f]!;
    s1 += a[aAt + f + 1]! * b[bAt + f + 1]!;
    s2 += a[aAt + f + 2]! * b[bAt + f + 2]!;
    s3 += a[aAt + f + 3]! * b[bAt + f + 3]!;
  }
  for (; f < dim; f++) s0 += a[aAt + f]! * b[bAt + f]!;
  return s0 + s1 + (s2 + s3);
}

/**
 * Dot products of every row of `a` [rowsA × dim] with every row of `b`
 * [rowsB × dim], as [rowsA × rowsB] float64: two rows of `a` by four of `b` per
 * pass, so that each load serves several products (about 4× a plain triple loop
 * in V8; float64 only, so that the loads stay monomorphic). When `symmetric`
 * (a is b), the blocks below the diagonal are skipped and mirrored.
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
  let i = 0;
  for (; i + 1 < rowsA; i += 2) {
    const a0 = i * dim;
    const a1 = a0 + dim;
    const o0 = i * rowsB;
    const o1 = o0 + rowsB;
    let k = symmetric ? i - (i % 4) : 0;
    for (; k + 3 < rowsB; k += 4) {
      const b0 = k * dim;
      const b1 = b0 + dim;
      const b2 = b1 + dim;
      const b3 = b2 + dim;
      let s00 = 0;
      let s01 = 0;
      let s02 = 0;
      let s03 = 0;
      let s10 = 0;
      let s11 = 0;
      let s12 = 0;
      let s13 = 0;
      for (let f = 0; f < dim; f++) {
        const x0 = a[a0 + f]!;
        const x1 = a[a1 + f]!;
        const y0 = b[b0 + f]!;
        const y1 = b[b1 + f]!;
        const y2 = b[b2 + f]!;
        const y3 = b[b3 + f]!;
        s00 += x0 * y0;
        s01 += x0 * y1;
        s02 += x0 * y2;
        s03 += x0 * y3;
        s10 += x1 * y0;
        s11 += x1 * y1;
        s12 += x1 * y2;
        s13 += x1 * y3;
      }
      out[o0 + k] = s00;
      out[o0 + k + 1] = s01;
      out[o0 + k + 2] = s02;
      out[o0 + k + 3] = s03;
      out[o1 + k] = s10;
      out[o1 + k + 1] = s11;
      out[o1 + k + 2] = s12;
      out[o1 + k + 3] = s13;
    }
    for (; k < rowsB; k++) {
      out[o0 + k] = dot(a, a0, b, k * dim, dim);
      out[o1 + k] = dot(a, a1, b, k * dim, dim);
    }
  }
  if (i < rowsA)
    for (let k = symmetric ? i : 0; k < rowsB; k++)
      out[i * rowsB + k] = dot(a, i * dim, b, k * dim, dim);
  if (symmetric)
    for (let r = 0; r < rowsA; r++)
      for (let k = 0; k < r; k++) out[r * rowsB + k] = out[k * rowsB + r]!;
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
): {
  train: LabelledFeatures;
  validation: LabelledFeatures;
  /** The rows of `data` each side took, in order. */
  trainRows: number[];
  validationRows: number[];
}[] {
  const perClass = Array.from({ length: classes }, (_, c) =>
    Array.from(data.labels.keys()).filter((i) => data.labels[i] === c),
  );
  const k = Math.min(folds, ...perClass.map((p) => p.length));
  if (k < minFolds) return [];
  return Array.from({ length: k }, (_, f) => {
    const trainRows = perClass.flatMap((p) => p.filter((_, i) => i % k !== f));
    const validationRows = perClass.flatMap((p) => p.filter((_, i) => i % k === f));
    return {
      train: subset(data, trainRows),
      validation: subset(data, validationRows),
      trainRows,
      validationRows,
    };
  });
}

/** Per-class feature matrices [k_c × dim] of a labelled set (rows in order). */
export function byClass(data: LabelledFeatures, classes: number): Float32Array[] {
  const { dim } = data;
  return Array.from({ length: classes }, (_, c) => {
    const rows = Array.from(data.labels.keys()).filter((i) => data.labels[i] === c);
    const out = new Float32Array(rows.length * dim);
    rows.forEach((r, i) => out.set(data.features.subarray(r * dim, (r + 1) * dim), i * dim));
    return out;
  });
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
