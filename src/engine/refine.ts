// "Generated + refined": a generated head pulled toward the support images.
// The MAP problem of logistic regression whose prior mean is the generated head
// instead of zero (issue 13):
//
//   min_{W,b}  Σ_i CE(W x_i + b, y_i) + (λ/2) (‖W − W_g‖² + ‖b − b_g‖²)
//
// on unit-norm support features x_i. The change W − W_g lies in the span of the
// support rows (the gradient of every term does), so it is solved there: a
// pivoted Cholesky factor of the Gram matrix gives orthonormal coordinates
// (K = L Lᵀ), and L-BFGS runs over r·C + C numbers instead of C·F. Strictly
// convex for λ > 0, so the optimum is unique: models/d2nwg/refine.py reaches the
// same one by another route (L-BFGS over the full W), which the parity test checks.

import type { Head, LabelledFeatures } from './heads';
import { accuracy, gramMatrix, stratifiedFolds } from './heads';

export interface RefineOptions {
  /** Prior strength λ: large keeps the generated head, small approaches logistic regression. */
  lambda: number;
  maxIterations?: number;
  /** Stop when the largest gradient entry falls below this. */
  tolerance?: number;
}

export interface RefineResult {
  head: Head;
  iterations: number;
  /** The objective at the optimum, and the largest gradient entry there. */
  objective: number;
  gradient: number;
}

/** The λ grid cross-validation chooses from: the factory's 1/C grid and a stronger prior. */
export const LAMBDA_GRID = [0.001, 0.01, 0.1, 1, 10] as const;

/**
 * Where cross-validation cannot run (a class with fewer than 3 images), this λ:
 * provisional until it is chosen on held-out zoo tasks per shot count (issue 13).
 */
export const DEFAULT_LAMBDA = 1;

/** Pivoted Cholesky of the n×n Gram matrix: K[p][p] ≈ L Lᵀ, L n×r with rank r. */
function pivotedCholesky(
  gram: Float64Array,
  n: number,
): { l: Float64Array; rank: number; pivots: number[] } {
  const diag = Float64Array.from({ length: n }, (_, i) => gram[i * n + i]!);
  const maxDiag = Math.max(...diag, 0);
  const l = new Float64Array(n * n); // row i (original index), column k
  const pivots: number[] = [];
  const used = new Uint8Array(n);
  for (let k = 0; k < n; k++) {
    let best = -1;
    for (let i = 0; i < n; i++) if (!used[i] && (best < 0 || diag[i]! > diag[best]!)) best = i;
    if (best < 0 || diag[best]! <= 1e-10 * maxDiag) break;
    used[best] = 1;
    pivots.push(best);
    const pivot = Math.sqrt(diag[best]!);
    l[best * n + k] = pivot;
    for (let i = 0; i < n; i++) {
      if (used[i]) continue;
      let s = gram[i * n + best]!;
      for (let j = 0; j < k; j++) s -= l[i * n + j]! * l[best * n + j]!;
      const v = s / pivot;
      l[i * n + k] = v;
      diag[i]! -= v * v;
    }
  }
  return { l, rank: pivots.length, pivots };
}

/** Refines `head` (rows applied to unit-norm features) on the support, for one λ. */
export function refineHead(
  head: Head,
  support: LabelledFeatures,
  { lambda, maxIterations = 500, tolerance = 1e-7 }: RefineOptions,
): RefineResult {
  if (!(lambda > 0)) throw new Error(`λ must be positive, got ${lambda}`);
  const { dim, features, labels } = support;
  const { classes } = head;
  const n = labels.length;
  const gram = gramMatrix(features, n, dim);
  const { l, rank: r, pivots } = pivotedCholesky(gram, n);
  // Generated logits without bias: g_i = W_g x_i  [n × C]
  const offsets = new Float64Array(n * classes);
  for (let i = 0; i < n; i++)
    for (let c = 0; c < classes; c++) {
      let s = 0;
      for (let j = 0; j < dim; j++) s += head.weight[c * dim + j]! * features[i * dim + j]!;
      offsets[i * classes + c] = s;
    }
  // θ = [c (C × r) | b (C)]
  const size = classes * r + classes;
  const theta = new Float64Array(size);
  for (let c = 0; c < classes; c++) theta[classes * r + c] = head.bias[c]!;
  const logits = new Float64Array(classes);
  const evaluate = (t: Float64Array, grad: Float64Array): number => {
    grad.fill(0);
    let f = 0;
    for (let i = 0; i < n; i++) {
      let max = -Infinity;
      for (let c = 0; c < classes; c++) {
        let z = offsets[i * classes + c]! + t[classes * r + c]!;
        for (let k = 0; k < r; k++) z += t[c * r + k]! * l[i * n + k]!;
        logits[c] = z;
        max = Math.max(max, z);
      }
      let total = 0;
      for (let c = 0; c < classes; c++) total += Math.exp(logits[c]! - max);
      f += max + Math.log(total) - logits[labels[i]!]!;
      for (let c = 0; c < classes; c++) {
        const d = Math.exp(logits[c]! - max) / total - (labels[i] === c ? 1 : 0);
        for (let k = 0; k < r; k++) grad[c * r + k]! += d * l[i * n + k]!;
        grad[classes * r + c]! += d;
      }
    }
    for (let c = 0; c < classes; c++) {
      for (let k = 0; k < r; k++) {
        const v = t[c * r + k]!;
        f += 0.5 * lambda * v * v;
        grad[c * r + k]! += lambda * v;
      }
      const db = t[classes * r + c]! - head.bias[c]!;
      f += 0.5 * lambda * db * db;
      grad[classes * r + c]! += lambda * db;
    }
    return f;
  };
  const { value, gradient, iterations } = lbfgs(theta, evaluate, maxIterations, tolerance);
  // W = W_g + c Q with Q = L_P⁻¹ X_P: solve A L_P = c (A: C × r), then W = W_g + A X_P.
  const weight = Float32Array.from(head.weight);
  for (let c = 0; c < classes; c++) {
    const a = new Float64Array(r);
    for (let k = r - 1; k >= 0; k--) {
      let s = theta[c * r + k]!;
      for (let j = k + 1; j < r; j++) s -= a[j]! * l[pivots[j]! * n + k]!;
      a[k] = s / l[pivots[k]! * n + k]!;
    }
    for (let k = 0; k < r; k++) {
      const row = pivots[k]!;
      for (let j = 0; j < dim; j++) weight[c * dim + j]! += a[k]! * features[row * dim + j]!;
    }
  }
  const bias = Float32Array.from({ length: classes }, (_, c) => theta[classes * r + c]!);
  return { head: { classes, dim, weight, bias }, iterations, objective: value, gradient };
}

/** Limited-memory BFGS (Nocedal & Wright, Alg. 7.4) with a backtracking Armijo line search. */
function lbfgs(
  x: Float64Array,
  evaluate: (x: Float64Array, grad: Float64Array) => number,
  maxIterations: number,
  tolerance: number,
  memory = 10,
): { value: number; gradient: number; iterations: number } {
  const size = x.length;
  const grad = new Float64Array(size);
  let f = evaluate(x, grad);
  const s: Float64Array[] = [];
  const y: Float64Array[] = [];
  const rho: number[] = [];
  const direction = new Float64Array(size);
  const trial = new Float64Array(size);
  const trialGrad = new Float64Array(size);
  const dot = (a: Float64Array, b: Float64Array) => {
    let v = 0;
    for (let i = 0; i < size; i++) v += a[i]! * b[i]!;
    return v;
  };
  const maxAbs = (a: Float64Array) => a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  let iteration = 0;
  for (; iteration < maxIterations && maxAbs(grad) > tolerance; iteration++) {
    // Two-loop recursion: direction = −H ∇f.
    direction.set(grad);
    const alpha: number[] = [];
    for (let k = s.length - 1; k >= 0; k--) {
      alpha[k] = rho[k]! * dot(s[k]!, direction);
      for (let i = 0; i < size; i++) direction[i]! -= alpha[k]! * y[k]![i]!;
    }
    const gamma = s.length > 0 ? dot(s.at(-1)!, y.at(-1)!) / dot(y.at(-1)!, y.at(-1)!) : 1;
    for (let i = 0; i < size; i++) direction[i]! *= gamma;
    for (let k = 0; k < s.length; k++) {
      const beta = rho[k]! * dot(y[k]!, direction);
      for (let i = 0; i < size; i++) direction[i]! += s[k]![i]! * (alpha[k]! - beta);
    }
    for (let i = 0; i < size; i++) direction[i] = -direction[i]!;
    let slope = dot(grad, direction);
    if (slope >= 0) {
      // Not a descent direction (curvature lost): restart from steepest descent.
      s.length = y.length = rho.length = 0;
      for (let i = 0; i < size; i++) direction[i] = -grad[i]!;
      slope = dot(grad, direction);
    }
    let step = iteration === 0 ? Math.min(1, 1 / Math.max(maxAbs(grad), 1e-12)) : 1;
    let fTrial = Infinity;
    for (let tries = 0; tries < 60; tries++) {
      for (let i = 0; i < size; i++) trial[i] = x[i]! + step * direction[i]!;
      fTrial = evaluate(trial, trialGrad);
      if (fTrial <= f + 1e-4 * step * slope) break;
      step /= 2;
    }
    if (!(fTrial < f) && !(fTrial <= f)) break; // no progress possible at this precision
    const sk = new Float64Array(size);
    const yk = new Float64Array(size);
    for (let i = 0; i < size; i++) {
      sk[i] = trial[i]! - x[i]!;
      yk[i] = trialGrad[i]! - grad[i]!;
    }
    x.set(trial);
    grad.set(trialGrad);
    const improvement = f - fTrial;
    f = fTrial;
    const sy = dot(sk, yk);
    if (sy > 1e-12) {
      s.push(sk);
      y.push(yk);
      rho.push(1 / sy);
      if (s.length > memory) {
        s.shift();
        y.shift();
        rho.shift();
      }
    }
    if (improvement <= 1e-15 * Math.max(1, Math.abs(f))) break;
  }
  return { value: f, gradient: maxAbs(grad), iterations: iteration };
}

/**
 * λ by cross-validation on the support (folds dealt per class, as the baselines'
 * C), scored by mean accuracy of the refined head over the generated samples;
 * ties to the stronger prior. DEFAULT_LAMBDA when a class has fewer than 3 images.
 */
export function chooseLambda(
  heads: readonly Head[],
  support: LabelledFeatures,
  classes: number,
): number {
  const folds = stratifiedFolds(support, classes, 3, 3);
  if (folds.length === 0) return DEFAULT_LAMBDA;
  const grid = [...LAMBDA_GRID].sort((a, b) => b - a); // strongest prior first
  const scores = grid.map(() => 0);
  for (const { train, validation } of folds)
    grid.forEach((lambda, g) => {
      for (const head of heads)
        scores[g]! += accuracy(refineHead(head, train, { lambda }).head, validation);
    });
  return grid[scores.indexOf(Math.max(...scores))]!;
}
