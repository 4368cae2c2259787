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
 * the folds). Every solve stops at sklearn's rule: the largest gradient entry
 * of the mean loss ≤ `solver_tol`, where the factory's evaluation stopped.
 */
export const refineSpecSchema = object({
  lambda_grid: array(number),
  cv_min_images: integer,
  cv_folds: integer,
  cv_prior: literal('mean', 'fold_reference'),
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
      let s = gram[row + best]!;
      for (let j = 0; j < k; j++) s -= l[row + j]! * l[bestRow + j]!;
      const v = s / pivot;
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
 * Solves (R Rᵀ) U = V in place, V an m × width matrix (row-major): each row
 * operation runs over `width` independent lanes, which V8 pipelines well.
 */
function choleskySolve(r: Float64Array, m: number, v: Float64Array, width: number): void {
  for (let i = 0; i < m; i++) {
    const vi = i * width;
    for (let k = 0; k < i; k++) {
      const f = r[i * m + k]!;
      if (f === 0) continue;
      const vk = k * width;
      for (let c = 0; c < width; c++) v[vi + c]! -= f * v[vk + c]!;
    }
    const d = 1 / r[i * m + i]!;
    for (let c = 0; c < width; c++) v[vi + c]! *= d;
  }
  for (let i = m - 1; i >= 0; i--) {
    const vi = i * width;
    for (let k = i + 1; k < m; k++) {
      const f = r[k * m + i]!;
      if (f === 0) continue;
      const vk = k * width;
      for (let c = 0; c < width; c++) v[vi + c]! -= f * v[vk + c]!;
    }
    const d = 1 / r[i * m + i]!;
    for (let c = 0; c < width; c++) v[vi + c]! *= d;
  }
}

/**
 * What the refine needs of a support set, whatever the head: orthonormal
 * coordinates of its rows (pivoted Cholesky of the Gram matrix) with a 1
 * appended for the bias, and their cross-product for the preconditioner.
 * Computed once per support and shared by every head and λ refined on it.
 */
export interface SupportBasis {
  support: LabelledFeatures;
  rank: number;
  /** The support's features as float64 [n × dim]. */
  rows: Float64Array;
  /** n × (rank + 1): row i's coordinates, then 1. */
  basis: Float64Array;
  /** (rank + 1)²: basisᵀ basis. */
  cross: Float64Array;
  l: Float64Array;
  pivots: number[];
  /** Cholesky factors of the preconditioner by λ, shared by every head refined here. */
  preconditioners: Map<string, Float64Array>;
}

export function prepareSupport(support: LabelledFeatures, gram?: Float64Array): SupportBasis {
  const { dim, features, labels } = support;
  const n = labels.length;
  const rows = Float64Array.from(features.subarray(0, n * dim));
  const { l, rank, pivots } = pivotedCholesky(gram ?? rowProducts(rows, n, rows, n, dim, true), n);
  const m = rank + 1;
  const basis = new Float64Array(n * m);
  const columns = new Float64Array(m * n); // basisᵀ
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < rank; k++) basis[i * m + k] = columns[k * n + i] = l[i * n + k]!;
    basis[i * m + rank] = columns[rank * n + i] = 1;
  }
  const cross = rowProducts(columns, m, columns, m, n, true);
  return { support, rank, rows, basis, cross, l, pivots, preconditioners: new Map() };
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
  /** m × C: row k < r the coordinates of every class, row r the biases. */
  theta: Float64Array;
  iterations: number;
  objective: number;
  gradient: number;
}

/**
 * The solve: L-BFGS over θ = [coordinates | bias] per class, preconditioned by
 * (λI + basisᵀ basis / C)⁻¹, the Hessian of the objective with every softmax
 * curvature set to 1/C, so that the support's few large directions (unit-norm
 * features of one backbone share most of their length) do not dictate the
 * step. `offsets` [n × C] are the prior's logits without bias, W_g x_i;
 * `start` warm-starts θ (the previous λ's optimum in a sweep).
 */
function solveOn(
  prepared: SupportBasis,
  offsets: Float64Array,
  priorBias: ArrayLike<number>,
  C: number,
  { lambda, maxIterations = 500, tolerance = 1e-7 }: RefineOptions,
  start?: Float64Array,
): Solved {
  if (!(lambda > 0)) throw new Error(`λ must be positive, got ${lambda}`);
  const { support, rank: r, basis, cross } = prepared;
  const { labels } = support;
  const n = labels.length;
  const m = r + 1;
  // θ: m × C; the prior mean is 0 and then b_g. All loops run over the C classes inside.
  const size = m * C;
  const prior = new Float64Array(size);
  for (let c = 0; c < C; c++) prior[r * C + c] = priorBias[c]!;
  const theta = start === undefined ? Float64Array.from(prior) : Float64Array.from(start);
  // Factored when first needed: a prior the support already agrees with takes no step.
  const key = `${lambda}/${C}`;
  const factor = () => {
    let preconditioner = prepared.preconditioners.get(key);
    if (preconditioner === undefined) {
      preconditioner = new Float64Array(m * m);
      for (let k = 0; k < m * m; k++) preconditioner[k] = cross[k]! / C;
      for (let k = 0; k < m; k++) preconditioner[k * m + k]! += lambda;
      cholesky(preconditioner, m);
      prepared.preconditioners.set(key, preconditioner);
    }
    return preconditioner;
  };
  const z = new Float64Array(C);
  const evaluate = (t: Float64Array, grad: Float64Array): number => {
    grad.fill(0);
    let f = 0;
    for (let i = 0; i < n; i++) {
      const row = i * m;
      for (let c = 0; c < C; c++) z[c] = offsets[i * C + c]!;
      for (let k = 0; k < m; k++) {
        const b = basis[row + k]!;
        if (b === 0) continue;
        const o = k * C;
        for (let c = 0; c < C; c++) z[c]! += b * t[o + c]!;
      }
      let max = -Infinity;
      for (let c = 0; c < C; c++) if (z[c]! > max) max = z[c]!;
      let total = 0;
      for (let c = 0; c < C; c++) {
        const e = Math.exp(z[c]! - max);
        z[c] = e;
        total += e;
      }
      const label = labels[i]!;
      f += -Math.log(z[label]! / total);
      const inverse = 1 / total;
      for (let c = 0; c < C; c++) z[c]! *= inverse;
      z[label]! -= 1;
      for (let k = 0; k < m; k++) {
        const b = basis[row + k]!;
        if (b === 0) continue;
        const o = k * C;
        for (let c = 0; c < C; c++) grad[o + c]! += b * z[c]!;
      }
    }
    for (let k = 0; k < size; k++) {
      const v = t[k]! - prior[k]!;
      f += 0.5 * lambda * v * v;
      grad[k]! += lambda * v;
    }
    return f;
  };
  const { value, gradient, iterations } = lbfgs(theta, evaluate, maxIterations, tolerance, (v) =>
    choleskySolve(factor(), m, v, C),
  );
  return { theta, iterations, objective: value, gradient };
}

/**
 * The change of W as a combination of the pivot rows, W = W_g + A X_P
 * (Q = L_P⁻¹ X_P, so A L_P = θ's coordinates): A [C × r], row c for class c.
 */
function pivotCoefficients(prepared: SupportBasis, theta: Float64Array, C: number): Float64Array {
  const { rank: r, l, pivots, support } = prepared;
  const n = support.labels.length;
  const a = new Float64Array(C * r);
  for (let c = 0; c < C; c++) {
    const o = c * r;
    for (let k = r - 1; k >= 0; k--) {
      let s = theta[k * C + c]!;
      for (let j = k + 1; j < r; j++) s -= a[o + j]! * l[pivots[j]! * n + k]!;
      a[o + k] = s / l[pivots[k]! * n + k]!;
    }
  }
  return a;
}

/** The refined head W = W_g + A X_P, b = θ's bias row. */
function headOf(head: Head, prepared: SupportBasis, theta: Float64Array): Head {
  const { classes, dim } = head;
  const { rank: r, pivots, rows } = prepared;
  const weight = Float64Array.from(head.weight);
  const a = pivotCoefficients(prepared, theta, classes);
  for (let c = 0; c < classes; c++) {
    const o = c * dim;
    for (let k = 0; k < r; k++) {
      const row = pivots[k]! * dim;
      const ak = a[c * r + k]!;
      for (let j = 0; j < dim; j++) weight[o + j]! += ak * rows[row + j]!;
    }
  }
  const bias = Float32Array.from({ length: classes }, (_, c) => theta[r * classes + c]!);
  return { classes, dim, weight: Float32Array.from(weight), bias };
}

/** The prior's logits without bias on the support rows, W_g x_i [n × C]. */
function priorOffsets(head: Head, prepared: SupportBasis): Float64Array {
  const n = prepared.support.labels.length;
  return rowProducts(prepared.rows, n, Float64Array.from(head.weight), head.classes, head.dim);
}

/** One head refined with one λ; a head the support leaves where it is (no step taken) is returned as is. */
function refineOn(
  head: Head,
  prepared: SupportBasis,
  options: RefineOptions,
  offsets = priorOffsets(head, prepared),
): RefineResult {
  const solved = solveOn(prepared, offsets, head.bias, head.classes, options);
  const refined =
    solved.iterations === 0
      ? { ...head, weight: Float32Array.from(head.weight), bias: Float32Array.from(head.bias) }
      : headOf(head, prepared, solved.theta);
  const { iterations, objective, gradient } = solved;
  return { head: refined, iterations, objective, gradient };
}

/**
 * Limited-memory BFGS (Nocedal & Wright, Alg. 7.4) with a backtracking Armijo
 * line search; `precondition` applies the initial inverse Hessian H₀ in place.
 */
function lbfgs(
  x: Float64Array,
  evaluate: (x: Float64Array, grad: Float64Array) => number,
  maxIterations: number,
  tolerance: number,
  precondition: (v: Float64Array) => void,
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
    // Two-loop recursion: direction = −H ∇f, H₀ the preconditioner.
    direction.set(grad);
    const alpha: number[] = [];
    for (let k = s.length - 1; k >= 0; k--) {
      alpha[k] = rho[k]! * dot(s[k]!, direction);
      for (let i = 0; i < size; i++) direction[i]! -= alpha[k]! * y[k]![i]!;
    }
    precondition(direction);
    for (let k = 0; k < s.length; k++) {
      const beta = rho[k]! * dot(y[k]!, direction);
      for (let i = 0; i < size; i++) direction[i]! += s[k]![i]! * (alpha[k]! - beta);
    }
    for (let i = 0; i < size; i++) direction[i] = -direction[i]!;
    let slope = dot(grad, direction);
    if (slope >= 0) {
      // Not a descent direction (curvature lost): restart from the preconditioned gradient.
      s.length = y.length = rho.length = 0;
      direction.set(grad);
      precondition(direction);
      for (let i = 0; i < size; i++) direction[i] = -direction[i]!;
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

/** The mean of heads of one shape: the prior cross-validation refits (one head, not one per sample). */
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
      for (let j = 0; j < v; j++) {
        let best = -Infinity;
        let predicted = -1;
        for (let c = 0; c < classes; c++) {
          let logit = priorLogits[j * classes + c]! + solved.theta[r * classes + c]!;
          for (let k = 0; k < r; k++) logit += a[c * r + k]! * pivotProducts[k * v + j]!;
          if (logit > best) {
            best = logit;
            predicted = c;
          }
        }
        if (predicted === validation.labels[j]) right++;
      }
      scores[g]! += right / v;
    });
  }
  return {
    lambda: grid[scores.indexOf(Math.max(...scores))]!,
    rule: 'cross-validation',
    minImages,
  };
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
  const tolerance = solverTolerance(spec, support.labels.length);
  return {
    heads: heads.map((h) => refineOn(h, prepared, { lambda: choice.lambda, tolerance }).head),
    choice,
  };
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
