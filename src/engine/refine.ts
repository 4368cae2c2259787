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
import {
  byClass,
  gramMatrix,
  headOfNetwork,
  labelled,
  rowProducts,
  stratifiedFolds,
} from './heads';
import type { NetworkWeights } from './sampling';
import { array, integer, literal, number, object, record } from './schema';

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

/**
 * How λ is chosen, as the factory measured it (the head manifest's `refine`
 * block): cross-validation over `lambda_grid` where every class has at least
 * `cv_min_images` images, else the λ calibrated on held-out zoo tasks for the
 * largest shot count in `lambda_by_shots` not above the smallest class. Each
 * fold refines `cv_prior`: the generated heads' mean ("mean"), or the
 * reference head of the fold's own training images ("fold_reference"; the
 * generated heads saw the validation images, which made a strong prior win
 * the folds). `cv_score` scores a λ by its folds' mean validation accuracy,
 * ties to the stronger prior ("accuracy") or to the lower mean validation
 * log-loss ("accuracy_then_loss"). Every solve stops at sklearn's rule: the largest gradient entry
 * of the mean loss ≤ `solver_tol`, where the factory's evaluation stopped.
 */
export const refineSpecSchema = object({
  lambda_grid: array(number),
  cv_min_images: integer,
  cv_folds: integer,
  cv_prior: literal('mean', 'fold_reference'),
  cv_score: literal('accuracy', 'accuracy_then_loss'),
  solver_tol: number,
  lambda_by_shots: record(number),
});
export type RefineSpec = ReturnType<typeof refineSpecSchema>;

/**
 * Cross-validation's prior for one fold under cv_prior "fold_reference": a
 * head made from the fold's training images alone (per class, unit-norm rows).
 */
export type FoldPrior = (perClass: readonly Float32Array[]) => Head;

/** The gradient bound of sklearn's rule for the summed loss over `rows` images. */
export function solverTolerance(spec: RefineSpec, rows: number): number {
  return spec.solver_tol * rows;
}

/** The grid the factory's refine.py uses; the tests' spec where no manifest is read. */
export const LAMBDA_GRID = [0.001, 0.01, 0.1, 1, 10] as const;
export const DEFAULT_SPEC: RefineSpec = {
  lambda_grid: [...LAMBDA_GRID],
  cv_min_images: 3,
  cv_folds: 3,
  cv_prior: 'mean',
  cv_score: 'accuracy',
  solver_tol: 1e-4,
  lambda_by_shots: { '1': 1, '2': 1 },
};

/** How the λ of a refine was chosen, for people and model cards. */
export interface LambdaChoice {
  lambda: number;
  rule: 'cross-validation' | 'calibrated';
  /** The smallest class's image count, which decided the rule. */
  minImages: number;
}

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
    const bestRow = best * n;
    for (let i = 0; i < n; i++) {
      if (used[i]) continue;
      const row = i * n;
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      let j = 0;
      for (; j + 3 < k; j += 4) {
        s0 += l[row + j]! * l[bestRow + j]!;
        s1 += l[row + j + 1]! * l[bestRow + j + 1]!;
        s2 += l[row + j + 2]! * l[bestRow + j + 2]!;
        s3 += l[row + j + 3]! * l[bestRow + j + 3]!;
      }
      for (; j < k; j++) s0 += l[row + j]! * l[bestRow + j]!;
      const v = (gram[row + best]! - (s0 + s1 + (s2 + s3))) / pivot;
      l[row + k] = v;
      diag[i]! -= v * v;
    }
  }
  return { l, rank: pivots.length, pivots };
}

/** In-place Cholesky of a symmetric positive definite m×m matrix (lower factor). */
function cholesky(a: Float64Array, m: number): Float64Array {
  for (let j = 0; j < m; j++) {
    let d = a[j * m + j]!;
    for (let k = 0; k < j; k++) d -= a[j * m + k]! ** 2;
    const pivot = Math.sqrt(Math.max(d, 1e-300));
    a[j * m + j] = pivot;
    for (let i = j + 1; i < m; i++) {
      let s = a[i * m + j]!;
      for (let k = 0; k < j; k++) s -= a[i * m + k]! * a[j * m + k]!;
      a[i * m + j] = s / pivot;
    }
    for (let k = j + 1; k < m; k++) a[j * m + k] = 0;
  }
  return a;
}

/**
 * What the refine needs of a support set, whatever the head: orthonormal
 * coordinates of its rows (pivoted Cholesky of the Gram matrix) with a 1
 * appended for the bias, and their cross-product for the preconditioner.
 * The rows are kept in pivot order, so the coordinates of the first `rank`
 * rows form a lower triangle (row j's stop at column j) and the products with
 * them (`basisLogits`, `basisGradient`) skip the zeros above it.
 * Computed once per support and shared by every head and λ refined on it.
 */
export interface SupportBasis {
  support: LabelledFeatures;
  rank: number;
  /** The support's row indices in pivot order: the pivots, then the rows the pivots span. */
  order: number[];
  /** The labels in pivot order. */
  labels: Int32Array;
  /** The support's features as float64 [n × dim], in pivot order. */
  rows: Float64Array;
  /** n × (rank + 1), pivot order: row j's coordinates, then 1. */
  basis: Float64Array;
  /** basisᵀ, (rank + 1) × n. */
  columns: Float64Array;
  /** (rank + 1)²: basisᵀ basis. */
  cross: Float64Array;
  /** The pivot rows' indices in the support (order's first `rank`). */
  pivots: number[];
  /** Cholesky factors of the preconditioner by λ (lower, and its transpose), shared by every head refined here. */
  preconditioners: Map<string, { lower: Float64Array; upper: Float64Array }>;
}

export function prepareSupport(support: LabelledFeatures, gram?: Float64Array): SupportBasis {
  const { dim, features, labels } = support;
  const n = labels.length;
  const { l, rank, pivots } = pivotedCholesky(gram ?? gramMatrix(features, n, dim), n);
  const pivoted = new Set(pivots);
  const order = [
    ...pivots,
    ...Array.from({ length: n }, (_, i) => i).filter((i) => !pivoted.has(i)),
  ];
  const rows = new Float64Array(n * dim);
  order.forEach((i, j) => rows.set(features.subarray(i * dim, (i + 1) * dim), j * dim));
  const m = rank + 1;
  const basis = new Float64Array(n * m);
  const columns = new Float64Array(m * n); // basisᵀ
  order.forEach((i, j) => {
    for (let k = 0; k < rank; k++) basis[j * m + k] = columns[k * n + j] = l[i * n + k]!;
    basis[j * m + rank] = columns[rank * n + j] = 1;
  });
  const cross = basisCross(columns, n, m);
  return {
    support,
    rank,
    order,
    labels: Int32Array.from(order, (i) => labels[i]!),
    rows,
    basis,
    columns,
    cross,
    pivots,
    preconditioners: new Map(),
  };
}

/**
 * basisᵀ basis [m × m] from its columns (m × n, pivot order): column k < r is
 * zero on the rows before k and the bias column is 1 on every row, so each
 * sum starts where both columns can be non-zero; the lower triangle mirrors
 * the upper. Two × four entries per block.
 */
function basisCross(columns: Float64Array, n: number, m: number): Float64Array {
  const r = m - 1;
  const out = new Float64Array(m * m);
  const start = (k: number, count: number) => (k + count > r ? 0 : k); // the first row any of k … k + count − 1 can use
  for (let a = 0; a < m; a += 2) {
    const rowsA = Math.min(2, m - a);
    const p0 = a * n;
    const p1 = rowsA > 1 ? p0 + n : p0;
    for (let b = a - (a % 4); b < m; b += 4) {
      const block = Math.min(4, m - b);
      const from = Math.max(start(a, rowsA), start(b, block));
      const q0 = b * n;
      const q1 = block > 1 ? q0 + n : q0;
      const q2 = block > 2 ? q0 + 2 * n : q0;
      const q3 = block > 3 ? q0 + 3 * n : q0;
      let s00 = 0;
      let s01 = 0;
      let s02 = 0;
      let s03 = 0;
      let s10 = 0;
      let s11 = 0;
      let s12 = 0;
      let s13 = 0;
      for (let j = from; j < n; j++) {
        const x0 = columns[p0 + j]!;
        const x1 = columns[p1 + j]!;
        const y0 = columns[q0 + j]!;
        const y1 = columns[q1 + j]!;
        const y2 = columns[q2 + j]!;
        const y3 = columns[q3 + j]!;
        s00 += x0 * y0;
        s01 += x0 * y1;
        s02 += x0 * y2;
        s03 += x0 * y3;
        s10 += x1 * y0;
        s11 += x1 * y1;
        s12 += x1 * y2;
        s13 += x1 * y3;
      }
      const sums = [s00, s01, s02, s03, s10, s11, s12, s13];
      for (let i = 0; i < rowsA; i++)
        for (let k = 0; k < block; k++) out[(a + i) * m + b + k] = sums[i * 4 + k]!;
    }
  }
  for (let i = 0; i < m; i++) for (let k = 0; k < i; k++) out[i * m + k] = out[k * m + i]!;
  return out;
}

/**
 * z [C × n] = θ basisᵀ (bias included) for the pivot-ordered basis: row j has
 * at most j + 1 coordinates, so a block of four rows from j sums min(j + 4, r)
 * terms. Two classes × four rows per block, as `rowProducts`.
 */
function basisLogits(
  theta: Float64Array,
  C: number,
  basis: Float64Array,
  n: number,
  m: number,
  out: Float64Array = new Float64Array(C * n),
): Float64Array {
  const r = m - 1;
  for (let c = 0; c < C; c += 2) {
    const pair = c + 1 < C;
    const t0 = c * m;
    const t1 = pair ? t0 + m : t0;
    const bias0 = theta[t0 + r]!;
    const bias1 = theta[t1 + r]!;
    for (let j = 0; j < n; j += 4) {
      const block = Math.min(4, n - j);
      const len = Math.min(j + block, r);
      const q0 = j * m;
      const q1 = block > 1 ? q0 + m : q0;
      const q2 = block > 2 ? q0 + 2 * m : q0;
      const q3 = block > 3 ? q0 + 3 * m : q0;
      let s00 = 0;
      let s01 = 0;
      let s02 = 0;
      let s03 = 0;
      let s10 = 0;
      let s11 = 0;
      let s12 = 0;
      let s13 = 0;
      for (let k = 0; k < len; k++) {
        const x0 = theta[t0 + k]!;
        const x1 = theta[t1 + k]!;
        const y0 = basis[q0 + k]!;
        const y1 = basis[q1 + k]!;
        const y2 = basis[q2 + k]!;
        const y3 = basis[q3 + k]!;
        s00 += x0 * y0;
        s01 += x0 * y1;
        s02 += x0 * y2;
        s03 += x0 * y3;
        s10 += x1 * y0;
        s11 += x1 * y1;
        s12 += x1 * y2;
        s13 += x1 * y3;
      }
      const o0 = c * n + j;
      const sums0 = [s00, s01, s02, s03];
      const sums1 = [s10, s11, s12, s13];
      for (let b = 0; b < block; b++) {
        out[o0 + b] = sums0[b]! + bias0;
        if (pair) out[o0 + n + b] = sums1[b]! + bias1;
      }
    }
  }
  return out;
}

/**
 * The gradient's data part [C × m] = z basis for the pivot-ordered basis:
 * coordinate k is zero on the rows before k, so its sum starts at row k; the
 * bias's sums every row. Two classes × four coordinates per block.
 */
function basisGradient(
  z: Float64Array,
  C: number,
  columns: Float64Array,
  n: number,
  m: number,
  out: Float64Array = new Float64Array(C * m),
): Float64Array {
  const r = m - 1;
  for (let c = 0; c < C; c += 2) {
    const pair = c + 1 < C;
    const z0 = c * n;
    const z1 = pair ? z0 + n : z0;
    for (let k = 0; k < m; k += 4) {
      const block = Math.min(4, m - k);
      const from = k + block > r ? 0 : k; // a block holding the bias column sums every row
      const q0 = k * n;
      const q1 = block > 1 ? q0 + n : q0;
      const q2 = block > 2 ? q0 + 2 * n : q0;
      const q3 = block > 3 ? q0 + 3 * n : q0;
      let s00 = 0;
      let s01 = 0;
      let s02 = 0;
      let s03 = 0;
      let s10 = 0;
      let s11 = 0;
      let s12 = 0;
      let s13 = 0;
      for (let j = from; j < n; j++) {
        const x0 = z[z0 + j]!;
        const x1 = z[z1 + j]!;
        const y0 = columns[q0 + j]!;
        const y1 = columns[q1 + j]!;
        const y2 = columns[q2 + j]!;
        const y3 = columns[q3 + j]!;
        s00 += x0 * y0;
        s01 += x0 * y1;
        s02 += x0 * y2;
        s03 += x0 * y3;
        s10 += x1 * y0;
        s11 += x1 * y1;
        s12 += x1 * y2;
        s13 += x1 * y3;
      }
      const o0 = c * m + k;
      const sums0 = [s00, s01, s02, s03];
      const sums1 = [s10, s11, s12, s13];
      for (let b = 0; b < block; b++) {
        out[o0 + b] = sums0[b]!;
        if (pair) out[o0 + m + b] = sums1[b]!;
      }
    }
  }
  return out;
}

/** Refines `head` (rows applied to unit-norm features) on the support, for one λ. */
export function refineHead(
  head: Head,
  support: LabelledFeatures | SupportBasis,
  options: RefineOptions,
): RefineResult {
  const prepared = 'basis' in support ? support : prepareSupport(support);
  return refineOn(head, prepared, options);
}

interface Solved {
  /** C × m: class c's coordinates (k < r), then its bias (k = r). */
  theta: Float64Array;
  /** False when θ is still the prior: no step taken from it. */
  moved: boolean;
  iterations: number;
  objective: number;
  gradient: number;
}

/**
 * (R Rᵀ) X = V in place for the C class rows of V [C × m] (class-major), R
 * lower triangular and U = Rᵀ (both row-major). Four classes × two rows per
 * block: each load of a class's entry serves both rows, each load of R four
 * classes, and the eight sums do not wait on each other.
 */
function triangularSolve(
  lower: Float64Array,
  upper: Float64Array,
  m: number,
  v: Float64Array,
  C: number,
): void {
  let c = 0;
  for (; c + 3 < C; c += 4) {
    const a0 = c * m;
    const a1 = a0 + m;
    const a2 = a1 + m;
    const a3 = a2 + m;
    // Forward: R y = v, rows i and i + 1 together.
    let i = 0;
    for (; i < m; i += 2) {
      const two = i + 1 < m;
      const row = i * m;
      const next = two ? row + m : row;
      let s0 = v[a0 + i]!;
      let s1 = v[a1 + i]!;
      let s2 = v[a2 + i]!;
      let s3 = v[a3 + i]!;
      let t0 = two ? v[a0 + i + 1]! : 0;
      let t1 = two ? v[a1 + i + 1]! : 0;
      let t2 = two ? v[a2 + i + 1]! : 0;
      let t3 = two ? v[a3 + i + 1]! : 0;
      for (let k = 0; k < i; k++) {
        const f = lower[row + k]!;
        const g = lower[next + k]!;
        const x0 = v[a0 + k]!;
        const x1 = v[a1 + k]!;
        const x2 = v[a2 + k]!;
        const x3 = v[a3 + k]!;
        s0 -= f * x0;
        s1 -= f * x1;
        s2 -= f * x2;
        s3 -= f * x3;
        t0 -= g * x0;
        t1 -= g * x1;
        t2 -= g * x2;
        t3 -= g * x3;
      }
      const d = 1 / lower[row + i]!;
      const x0 = (v[a0 + i] = s0 * d);
      const x1 = (v[a1 + i] = s1 * d);
      const x2 = (v[a2 + i] = s2 * d);
      const x3 = (v[a3 + i] = s3 * d);
      if (two) {
        const g = lower[next + i]!;
        const e = 1 / lower[next + i + 1]!;
        v[a0 + i + 1] = (t0 - g * x0) * e;
        v[a1 + i + 1] = (t1 - g * x1) * e;
        v[a2 + i + 1] = (t2 - g * x2) * e;
        v[a3 + i + 1] = (t3 - g * x3) * e;
      }
    }
    // Backward: U x = y, rows i and i − 1 together.
    for (i = m - 1; i >= 0; i -= 2) {
      const two = i >= 1;
      const row = i * m;
      const prev = two ? row - m : row;
      let s0 = v[a0 + i]!;
      let s1 = v[a1 + i]!;
      let s2 = v[a2 + i]!;
      let s3 = v[a3 + i]!;
      let t0 = two ? v[a0 + i - 1]! : 0;
      let t1 = two ? v[a1 + i - 1]! : 0;
      let t2 = two ? v[a2 + i - 1]! : 0;
      let t3 = two ? v[a3 + i - 1]! : 0;
      for (let k = i + 1; k < m; k++) {
        const f = upper[row + k]!;
        const g = upper[prev + k]!;
        const x0 = v[a0 + k]!;
        const x1 = v[a1 + k]!;
        const x2 = v[a2 + k]!;
        const x3 = v[a3 + k]!;
        s0 -= f * x0;
        s1 -= f * x1;
        s2 -= f * x2;
        s3 -= f * x3;
        t0 -= g * x0;
        t1 -= g * x1;
        t2 -= g * x2;
        t3 -= g * x3;
      }
      const d = 1 / upper[row + i]!;
      const x0 = (v[a0 + i] = s0 * d);
      const x1 = (v[a1 + i] = s1 * d);
      const x2 = (v[a2 + i] = s2 * d);
      const x3 = (v[a3 + i] = s3 * d);
      if (two) {
        const g = upper[prev + i]!;
        const e = 1 / upper[prev + i - 1]!;
        v[a0 + i - 1] = (t0 - g * x0) * e;
        v[a1 + i - 1] = (t1 - g * x1) * e;
        v[a2 + i - 1] = (t2 - g * x2) * e;
        v[a3 + i - 1] = (t3 - g * x3) * e;
      }
    }
  }
  for (; c < C; c++) {
    const at = c * m;
    for (let i = 0; i < m; i++) {
      const row = i * m;
      let s0 = v[at + i]!;
      for (let k = 0; k < i; k++) s0 -= lower[row + k]! * v[at + k]!;
      v[at + i] = s0 / lower[row + i]!;
    }
    for (let i = m - 1; i >= 0; i--) {
      const row = i * m;
      let s0 = v[at + i]!;
      for (let k = i + 1; k < m; k++) s0 -= upper[row + k]! * v[at + k]!;
      v[at + i] = s0 / upper[row + i]!;
    }
  }
}

/**
 * The softmax curvature the preconditioner assumes, × 1/C. Generated heads are
 * confident on their support, so their curvature sits far below a uniform
 * softmax's 1/C: on 20 classes × 20 real images (λ = 0.01) 0.1/C took 15
 * iterations where 1/C took 27, and 0.01/C no fewer than 0.1/C. With the
 * γ scaling (lbfgs) on drawn images, 0.1/C still took the fewest: 32 at
 * λ = 0.001, against 45 at 1/C and 38 at 0.03/C.
 */
const CURVATURE = 0.1;

/**
 * The solve: L-BFGS over θ = [coordinates | bias] per class, preconditioned by
 * (λI + s basisᵀ basis)⁻¹, the Hessian of the objective with every softmax
 * curvature set to s = CURVATURE / C, so that the support's few large
 * directions (unit-norm features of one backbone share most of their length)
 * do not dictate the step. `offsets` [C × n] are the prior's logits without bias, W_g x_i;
 * `start` warm-starts θ. θ is class-major, so the logits (θ basisᵀ) and the
 * gradient (residual × basis) are two matrix products (rowProducts).
 */
function solveOn(
  prepared: SupportBasis,
  offsets: Float64Array,
  priorBias: ArrayLike<number>,
  C: number,
  { lambda, maxIterations = 500, tolerance = 1e-7 }: RefineOptions,
  start?: Float64Array,
  alternative?: Float64Array,
): Solved {
  if (!(lambda > 0)) throw new Error(`λ must be positive, got ${lambda}`);
  const { rank: r, basis, columns, cross, labels } = prepared;
  const n = labels.length;
  const m = r + 1;
  const size = C * m;
  // The prior mean: 0 for the coordinates, b_g for the biases.
  const prior = new Float64Array(size);
  for (let c = 0; c < C; c++) prior[c * m + r] = priorBias[c]!;
  const theta = start === undefined ? Float64Array.from(prior) : Float64Array.from(start);
  // Factored when first needed: a prior the support already agrees with takes no step.
  const key = `${lambda}/${C}`;
  const factor = () => {
    let factors = prepared.preconditioners.get(key);
    if (factors === undefined) {
      const lower = new Float64Array(m * m);
      for (let k = 0; k < m * m; k++) lower[k] = cross[k]! * (CURVATURE / C);
      for (let k = 0; k < m; k++) lower[k * m + k]! += lambda;
      cholesky(lower, m);
      const upper = new Float64Array(m * m);
      for (let i = 0; i < m; i++) for (let k = 0; k <= i; k++) upper[k * m + i] = lower[i * m + k]!;
      factors = { lower, upper };
      prepared.preconditioners.set(key, factors);
    }
    return factors;
  };
  const z = new Float64Array(C * n); // the logits, then the residual: [C × n]
  const evaluate = (t: Float64Array, grad: Float64Array): number => {
    basisLogits(t, C, basis, n, m, z);
    let f = 0;
    for (let i = 0; i < n; i++) {
      let max = -Infinity;
      for (let c = 0; c < C; c++) {
        const v = (z[c * n + i]! += offsets[c * n + i]!);
        if (v > max) max = v;
      }
      let total = 0;
      for (let c = 0; c < C; c++) {
        const e = Math.exp(z[c * n + i]! - max);
        z[c * n + i] = e;
        total += e;
      }
      const label = labels[i]!;
      f += -Math.log(z[label * n + i]! / total);
      const inverse = 1 / total;
      for (let c = 0; c < C; c++) z[c * n + i]! *= inverse;
      z[label * n + i]! -= 1;
    }
    basisGradient(z, C, columns, n, m, grad); // residual × basis: [C × m]
    for (let k = 0; k < size; k++) {
      const v = t[k]! - prior[k]!;
      f += 0.5 * lambda * v * v;
      grad[k]! += lambda * v;
    }
    return f;
  };
  // `alternative` replaces the start when its objective is lower; the winner's evaluation is the solve's first.
  let initial: { value: number; grad: Float64Array } | undefined;
  let fromAlternative = false;
  if (alternative !== undefined) {
    const grad = new Float64Array(size);
    const value = evaluate(theta, grad);
    const otherGrad = new Float64Array(size);
    const other = evaluate(alternative, otherGrad);
    fromAlternative = other < value;
    if (fromAlternative) theta.set(alternative);
    initial = fromAlternative ? { value: other, grad: otherGrad } : { value, grad };
  }
  const { value, gradient, iterations } = lbfgs(
    theta,
    evaluate,
    maxIterations,
    tolerance,
    (v) => {
      const { lower, upper } = factor();
      triangularSolve(lower, upper, m, v, C);
    },
    initial,
  );
  const moved = start !== undefined || fromAlternative || iterations > 0;
  return { theta, moved, iterations, objective: value, gradient };
}

/**
 * The change of W as a combination of the pivot rows, W = W_g + A X_P
 * (Q = L_P⁻¹ X_P, so A L_P = θ's coordinates): A [C × r], row c for class c.
 */
function pivotCoefficients(prepared: SupportBasis, theta: Float64Array, C: number): Float64Array {
  const { rank: r, basis } = prepared;
  const m = r + 1;
  const a = new Float64Array(C * r);
  for (let c = 0; c < C; c++) {
    const o = c * r;
    for (let k = r - 1; k >= 0; k--) {
      let s = theta[c * m + k]!;
      for (let j = k + 1; j < r; j++) s -= a[o + j]! * basis[j * m + k]!;
      a[o + k] = s / basis[k * m + k]!;
    }
  }
  return a;
}

/** The refined head W = W_g + A X_P, b = θ's bias row. Four pivot rows per pass over a class's weights. */
function headOf(head: Head, prepared: SupportBasis, theta: Float64Array): Head {
  const { classes, dim } = head;
  const { rank: r, rows } = prepared;
  const weight = Float64Array.from(head.weight);
  const a = pivotCoefficients(prepared, theta, classes);
  for (let c = 0; c < classes; c++) {
    const o = c * dim;
    const ac = c * r;
    let k = 0;
    for (; k + 3 < r; k += 4) {
      const r0 = k * dim;
      const r1 = r0 + dim;
      const r2 = r1 + dim;
      const r3 = r2 + dim;
      const a0 = a[ac + k]!;
      const a1 = a[ac + k + 1]!;
      const a2 = a[ac + k + 2]!;
      const a3 = a[ac + k + 3]!;
      for (let j = 0; j < dim; j++)
        weight[o + j]! +=
          a0 * rows[r0 + j]! + a1 * rows[r1 + j]! + a2 * rows[r2 + j]! + a3 * rows[r3 + j]!;
    }
    for (; k < r; k++) {
      const row = k * dim;
      const ak = a[ac + k]!;
      for (let j = 0; j < dim; j++) weight[o + j]! += ak * rows[row + j]!;
    }
  }
  const bias = Float32Array.from({ length: classes }, (_, c) => theta[c * (r + 1) + r]!);
  return { classes, dim, weight: Float32Array.from(weight), bias };
}

/** The prior's logits without bias on the support rows, W_g x_i [C × n], rows in pivot order. */
function priorOffsets(head: Head, prepared: SupportBasis): Float64Array {
  const n = prepared.support.labels.length;
  return rowProducts(Float64Array.from(head.weight), head.classes, prepared.rows, n, head.dim);
}

/** One head refined with one λ; a head the support leaves where it is (no step taken) is returned as is. */
function refineOn(
  head: Head,
  prepared: SupportBasis,
  options: RefineOptions,
  offsets = priorOffsets(head, prepared),
): RefineResult {
  const solved = solveOn(prepared, offsets, head.bias, head.classes, options);
  const { iterations, objective, gradient } = solved;
  return { head: solvedHead(head, prepared, solved), iterations, objective, gradient };
}

/** The head a solve ended at; a copy of the prior when no step was taken from it. */
function solvedHead(head: Head, prepared: SupportBasis, solved: Solved): Head {
  return solved.moved
    ? headOf(head, prepared, solved.theta)
    : { ...head, weight: Float32Array.from(head.weight), bias: Float32Array.from(head.bias) };
}

/**
 * Limited-memory BFGS (Nocedal & Wright, Alg. 7.4) with a backtracking Armijo
 * line search; `precondition` applies the preconditioner P⁻¹ in place, which
 * the newest pair scales into the initial inverse Hessian H₀ = γP⁻¹.
 *
 * P⁻¹ is applied once per accepted point, to its gradient: the two-loop
 * recursion needs P⁻¹q with q = g − Σ αₖ yₖ, which is P⁻¹g − Σ αₖ P⁻¹yₖ, and
 * P⁻¹yₖ = P⁻¹gₖ₊₁ − P⁻¹gₖ is kept with each pair (γ needs it too). Applying
 * P⁻¹ to q and to y separately cost two triangular solves per iteration.
 */
function lbfgs(
  x: Float64Array,
  evaluate: (x: Float64Array, grad: Float64Array) => number,
  maxIterations: number,
  tolerance: number,
  precondition: (v: Float64Array) => void,
  initial?: { value: number; grad: Float64Array },
  memory = 10,
): { value: number; gradient: number; iterations: number } {
  const size = x.length;
  const grad = initial?.grad ?? new Float64Array(size);
  let f = initial?.value ?? evaluate(x, grad);
  const s: Float64Array[] = [];
  const y: Float64Array[] = [];
  const py: Float64Array[] = []; // P⁻¹yₖ
  const spare: Float64Array[] = []; // vectors of dropped pairs and gradients, reused
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
  let gamma = 1;
  let pg: Float64Array | undefined; // P⁻¹ of the current gradient, once a step is due
  for (; iteration < maxIterations && maxAbs(grad) > tolerance; iteration++) {
    if (pg === undefined) {
      pg = Float64Array.from(grad);
      precondition(pg);
    }
    // Two-loop recursion: direction = −H ∇f, H₀ = γP⁻¹.
    direction.set(grad);
    const alpha: number[] = [];
    for (let k = s.length - 1; k >= 0; k--) {
      const a = (alpha[k] = rho[k]! * dot(s[k]!, direction));
      const yk = y[k]!;
      for (let i = 0; i < size; i++) direction[i]! -= a * yk[i]!;
    }
    direction.set(pg);
    for (let k = 0; k < s.length; k++) {
      const a = alpha[k]!;
      const pk = py[k]!;
      for (let i = 0; i < size; i++) direction[i]! -= a * pk[i]!;
    }
    for (let i = 0; i < size; i++) direction[i]! *= gamma;
    for (let k = 0; k < s.length; k++) {
      const a = alpha[k]! - rho[k]! * dot(y[k]!, direction);
      const sk = s[k]!;
      for (let i = 0; i < size; i++) direction[i]! += a * sk[i]!;
    }
    for (let i = 0; i < size; i++) direction[i] = -direction[i]!;
    let slope = dot(grad, direction);
    if (slope >= 0) {
      // Not a descent direction (curvature lost): restart from the preconditioned gradient.
      s.length = y.length = py.length = rho.length = 0;
      gamma = 1;
      for (let i = 0; i < size; i++) direction[i] = -pg[i]!;
      slope = dot(grad, direction);
    }
    let step = 1;
    let fTrial = Infinity;
    for (let tries = 0; tries < 60; tries++) {
      for (let i = 0; i < size; i++) trial[i] = x[i]! + step * direction[i]!;
      fTrial = evaluate(trial, trialGrad);
      if (fTrial <= f + 1e-4 * step * slope) break;
      step /= 2;
    }
    if (!(fTrial < f) && !(fTrial <= f)) break; // no progress possible at this precision
    const sk = spare.pop() ?? new Float64Array(size);
    const yk = spare.pop() ?? new Float64Array(size);
    for (let i = 0; i < size; i++) {
      sk[i] = trial[i]! - x[i]!;
      yk[i] = trialGrad[i]! - grad[i]!;
    }
    x.set(trial);
    grad.set(trialGrad);
    const improvement = f - fTrial;
    f = fTrial;
    if (improvement <= 1e-15 * Math.max(1, Math.abs(f))) break;
    if (maxAbs(grad) <= tolerance) {
      iteration++; // converged: the last point needs no P⁻¹
      break;
    }
    const pgNext = spare.pop() ?? new Float64Array(size);
    pgNext.set(grad);
    precondition(pgNext);
    const sy = dot(sk, yk);
    if (sy > 1e-12) {
      // γ = sᵀy / yᵀP⁻¹y from the newest pair (Nocedal & Wright 7.20, preconditioned): the fixed
      // curvature's scale is a guess, and a wrong scale costs a backtrack at every step
      // (20 classes × 20 drawn images, λ = 0.001: 82 evaluations without γ, 37 with).
      const pyk = spare.pop() ?? new Float64Array(size);
      for (let i = 0; i < size; i++) pyk[i] = pgNext[i]! - pg[i]!;
      const yhy = dot(yk, pyk);
      if (yhy > 0) gamma = sy / yhy;
      s.push(sk);
      y.push(yk);
      py.push(pyk);
      rho.push(1 / sy);
      if (s.length > memory) {
        spare.push(s.shift()!, y.shift()!, py.shift()!);
        rho.shift();
      }
    } else spare.push(sk, yk);
    spare.push(pg);
    pg = pgNext;
  }
  return { value: f, gradient: maxAbs(grad), iterations: iteration };
}

export function meanHead(heads: readonly Head[]): Head {
  const [first] = heads;
  if (first === undefined) throw new Error('no heads to average');
  const weight = new Float32Array(first.weight.length);
  const bias = new Float32Array(first.bias.length);
  for (const h of heads) {
    h.weight.forEach((v, k) => (weight[k]! += v / heads.length));
    h.bias.forEach((v, k) => (bias[k]! += v / heads.length));
  }
  return { classes: first.classes, dim: first.dim, weight, bias };
}

/**
 * λ for refining `heads` on `support` (models/d2nwg/refine.py, choose_lambda):
 * by cross-validation when every class has at least `cv_min_images` images
 * (folds dealt per class in image order; each fold refines the spec's
 * `cv_prior`; mean validation accuracy; ties to the stronger prior), else the
 * calibrated λ. `gram` (the support's Gram matrix) spares the folds theirs.
 */
export function chooseLambda(
  heads: readonly Head[],
  support: LabelledFeatures,
  classes: number,
  spec: RefineSpec = DEFAULT_SPEC,
  foldPrior?: FoldPrior,
  gram?: Float64Array,
): LambdaChoice {
  const counts = new Array<number>(classes).fill(0);
  support.labels.forEach((c) => counts[c]!++);
  const minImages = Math.min(...counts);
  const folds =
    minImages >= spec.cv_min_images
      ? stratifiedFolds(support, classes, spec.cv_folds, spec.cv_folds)
      : [];
  if (folds.length === 0)
    return { lambda: calibratedLambda(spec, minImages), rule: 'calibrated', minImages };
  if (spec.cv_prior === 'fold_reference' && foldPrior === undefined)
    throw new Error(
      "the refine rule cross-validates with each fold's reference head, but no fold prior was given",
    );
  const mean = spec.cv_prior === 'mean' ? meanHead(heads) : undefined;
  const grid = [...spec.lambda_grid].sort((a, b) => b - a); // strongest prior first
  const scores = grid.map(() => 0);
  const losses = grid.map(() => 0);
  const n = support.labels.length;
  const all = gram ?? gramMatrix(support.features, n, support.dim);
  for (const { train, validation, trainRows, validationRows } of folds) {
    const prior = mean ?? foldPrior!(byClass(train, classes));
    const prepared = prepareSupport(train, subGram(all, n, trainRows));
    const tolerance = solverTolerance(spec, trainRows.length);
    const offsets = priorOffsets(prior, prepared);
    // The validation logits without forming W: W_g x_v + A (X_P x_v) + b, X_P x_v from the Gram matrix.
    const v = validationRows.length;
    const priorLogits = rowProducts(
      Float64Array.from(validation.features),
      v,
      Float64Array.from(prior.weight),
      classes,
      support.dim,
    );
    const r = prepared.rank;
    const pivotProducts = new Float64Array(r * v); // [r × v]
    for (let k = 0; k < r; k++) {
      const row = trainRows[prepared.pivots[k]!]! * n;
      for (let j = 0; j < v; j++) pivotProducts[k * v + j] = all[row + validationRows[j]!]!;
    }
    // Down the grid, each solve starts from the previous λ's optimum.
    let theta: Float64Array | undefined;
    grid.forEach((lambda, g) => {
      const solved = solveOn(prepared, offsets, prior.bias, classes, { lambda, tolerance }, theta);
      theta = solved.theta;
      const a = pivotCoefficients(prepared, solved.theta, classes);
      let right = 0;
      let loss = 0;
      const logits = new Float64Array(classes);
      for (let j = 0; j < v; j++) {
        let best = -Infinity;
        let predicted = -1;
        for (let c = 0; c < classes; c++) {
          let logit = priorLogits[j * classes + c]! + solved.theta[c * (r + 1) + r]!;
          for (let k = 0; k < r; k++) logit += a[c * r + k]! * pivotProducts[k * v + j]!;
          logits[c] = logit;
          if (logit > best) {
            best = logit;
            predicted = c;
          }
        }
        const label = validation.labels[j]!;
        if (predicted === label) right++;
        let total = 0;
        for (let c = 0; c < classes; c++) total += Math.exp(logits[c]! - best);
        loss += best + Math.log(total) - logits[label]!;
      }
      scores[g]! += right / v;
      losses[g]! += loss / v;
    });
  }
  return {
    lambda: grid[bestLambda(scores, losses, spec.cv_score)]!,
    rule: 'cross-validation',
    minImages,
  };
}

/** Accuracies closer than this count as tied (refine.py's TIE): means over folds summed in another order. */
const TIE = 1e-9;

/**
 * The grid index cross-validation picks (grid strongest prior first): the best
 * accuracy, ties to the stronger prior, or with "accuracy_then_loss" to the
 * lower validation loss (refine.py, best_lambda).
 */
function bestLambda(scores: number[], losses: number[], score: RefineSpec['cv_score']): number {
  const top = Math.max(...scores);
  if (score === 'accuracy') return scores.indexOf(top);
  let best = -1;
  scores.forEach((s, g) => {
    if (s >= top - TIE && (best < 0 || losses[g]! < losses[best]!)) best = g;
  });
  return best;
}

/** The rows and columns `rows` of an n × n matrix. */
function subGram(gram: Float64Array, n: number, rows: readonly number[]): Float64Array {
  const m = rows.length;
  const out = new Float64Array(m * m);
  rows.forEach((r, i) => {
    for (let j = 0; j < m; j++) out[i * m + j] = gram[r * n + rows[j]!]!;
  });
  return out;
}

/** The calibrated λ of the largest shot count not above `images` (the smallest listed below it). */
export function calibratedLambda(spec: RefineSpec, images: number): number {
  const shots = Object.keys(spec.lambda_by_shots)
    .map(Number)
    .sort((a, b) => a - b);
  if (shots.length === 0) throw new Error('the manifest calibrates λ for no shot count');
  const at = shots.filter((s) => s <= images).at(-1) ?? shots[0]!;
  return spec.lambda_by_shots[String(at)]!;
}

/**
 * Every head refined on one support with one λ (chosen by the rule above),
 * each solve stopped at the spec's tolerance.
 */
export function refineHeads(
  heads: readonly Head[],
  support: LabelledFeatures,
  classes: number,
  spec: RefineSpec = DEFAULT_SPEC,
  foldPrior?: FoldPrior,
): { heads: Head[]; choice: LambdaChoice } {
  const gram = gramMatrix(support.features, support.labels.length, support.dim);
  const choice = chooseLambda(heads, support, classes, spec, foldPrior, gram);
  const prepared = prepareSupport(support, gram);
  const options = {
    lambda: choice.lambda,
    tolerance: solverTolerance(spec, support.labels.length),
  };
  // Each head after the first may start where the previous one ended, moved by the difference of
  // their priors on the support: the samples are near each other, and under a weak prior their
  // refined logits on the support nearly agree. Whichever start has the lower objective is taken.
  let previous: { offsets: Float64Array; theta: Float64Array } | undefined;
  const refined = heads.map((h) => {
    const offsets = priorOffsets(h, prepared);
    const warm =
      previous && movedStart(prepared, previous.theta, previous.offsets, offsets, h.classes);
    const solved = solveOn(prepared, offsets, h.bias, h.classes, options, undefined, warm);
    previous = { offsets, theta: solved.theta };
    return solvedHead(h, prepared, solved);
  });
  return { heads: refined, choice };
}

/**
 * θ of the previous head's optimum moved to another prior: the coordinates a of the change of
 * the priors' logits on the support (a · basis = new − old offsets, solved on the pivot rows,
 * where the basis is triangular) are taken off, the biases kept, so the logits start where the
 * previous optimum had them.
 */
function movedStart(
  prepared: SupportBasis,
  theta: Float64Array,
  oldOffsets: Float64Array,
  newOffsets: Float64Array,
  C: number,
): Float64Array {
  const { rank: r, basis, labels } = prepared;
  const n = labels.length;
  const m = r + 1;
  const out = Float64Array.from(theta);
  const a = new Float64Array(r);
  for (let c = 0; c < C; c++) {
    for (let k = 0; k < r; k++) {
      let s = newOffsets[c * n + k]! - oldOffsets[c * n + k]!;
      for (let j = 0; j < k; j++) s -= basis[k * m + j]! * a[j]!;
      a[k] = s / basis[k * m + k]!;
      out[c * m + k]! -= a[k]!;
    }
  }
  return out;
}

/** "generated + refined (λ = 0.1, by cross-validation on the support)", for people. */
export function describeRefinement({ lambda, rule, minImages }: LambdaChoice): string {
  const why =
    rule === 'cross-validation'
      ? 'by cross-validation on the support'
      : `calibrated on held-out zoo tasks for ${minImages} image${minImages === 1 ? '' : 's'} per class`;
  return `generated + refined (λ = ${lambda}, ${why})`;
}

/**
 * Heads refined toward the support images (refine.ts), with the λ the
 * manifest's rule chooses; the evaluation calls the same function, so the page,
 * the CLI and `evaluate` report the same refined heads.
 */
export function refineNetworks(
  networks: readonly NetworkWeights[],
  perClass: readonly Float32Array[],
  featureDim: number,
  spec: RefineSpec,
  foldPrior?: FoldPrior,
): { networks: NetworkWeights[]; choice: LambdaChoice } {
  const support = labelled(perClass, featureDim);
  const heads = networks.map((n) => headOfNetwork(n, perClass.length, featureDim));
  const { heads: refined, choice } = refineHeads(heads, support, perClass.length, spec, foldPrior);
  return {
    networks: refined.map((h) => ({
      weight: { shape: [h.classes, h.dim], data: h.weight },
      bias: { shape: [h.classes], data: h.bias },
    })),
    choice,
  };
}
