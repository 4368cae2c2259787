// The support side of the residual head generator (models/d2nwg/residual_head.py):
// from a support's images, the closed-form reference head, each class's basis,
// the denoiser's conditions, and the map between residual coordinates and heads.
//
//   reference  R_c = s · A (μ_c − m),  r_c = −½ s (μ_c − m)ᵀ A (μ_c + m),
//              A = I − U diag(e / (e + λ)) Uᵀ  (U, e: the seen within-class eigenpairs)
//   basis      Q_c [g + K, F]: the top g seen eigenvectors, then the support's named
//              directions, orthonormalised in order and orthogonal to those g (a zero row
//              where a direction depends on those before it)
//   residual   a_c = [Q_c (W_c − R_c) / σ_w, (b_c − r_c) / σ_b]  [g + K + 1]
//
// Float64 inside (the factory computes in float32); the factory's fixture
// models/fixtures/residual-support.json records the parity.

import { dot, rowProducts } from './heads';

export const BASIS_DIRECTIONS = [
  'lda',
  'ncm',
  'mean',
  'centre',
  'diag',
  'sign',
  'pc1',
  'pc2',
  'nearest',
] as const;
export type BasisDirection = (typeof BASIS_DIRECTIONS)[number];

/** The seen datasets' within-class covariance: its top eigenpairs and its diagonal. */
export interface SeenStatistics {
  eigenvectors: Float32Array; // U [rank, dim]
  eigenvalues: Float32Array; // e [rank]
  variance: Float32Array; // d² [dim]
  rank: number;
  dim: number;
}

export interface SupportSpec {
  /** λ of the reference's A. */
  shrinkage: number;
  /** The support's directions, in Gram–Schmidt order (BASIS_DIRECTIONS). */
  basis: readonly string[];
  /** g: how many of the seen eigenvectors start every class's basis. */
  globalRank: number;
  /** s: the reference head's scale (fitted to the zoo). */
  referenceScale: number;
}

/** Per-coordinate standard deviations of the residual over the training rows. */
export interface ResidualScale {
  /** σ_w [g + K], or one value for every coordinate. */
  weight: Float32Array;
  /** σ_b */
  bias: number;
}

/** Heads of S samples over one support: W [S, C, F], b [S, C]. */
export interface ResidualHeads {
  weight: Float32Array;
  bias: Float32Array;
}

/** One support's reference head, basis and conditions (residual_head.Support). */
export interface ResidualSupport {
  classes: number; // C
  dim: number; // F
  directions: number; // K: the spec's named directions
  basisRows: number; // g + K
  weight: Float32Array; // R [C, F]
  bias: Float32Array; // r [C]
  basis: Float32Array; // Q [C, g + K, F]
  /** Unit-scaled direction i · Q row j (Gram–Schmidt's R): [C, K, K]. */
  factors: Float32Array;
  kmax: number; // images in the largest class
  imageFeatureSize: number; // P = g + K + 3
  /** Per image: coordinates × 10, distance to its class mean, cosine and reference margins × 10: [C, kmax, P]. */
  imageFeatures: Float32Array;
  imageMask: Float32Array; // [C, kmax]: 1 for an image, 0 for padding
  classFeatureSize: number; // Qc = K(K + 1)/2 + 3(g + K) + 5
  classFeatures: Float32Array; // [C, Qc]
  shots: number; // images in the smallest class
}

/** A Gram–Schmidt residual below this (relative) marks a direction dependent on those before it. */
const DEPENDENT = 1e-3;
/** Singular values below this fraction of the largest give no principal direction. */
const RANK_CUTOFF = 1e-6;
/** The factory's scale of coordinates and margins in the conditions. */
const CONDITION_SCALE = 10;

/**
 * target [n × dim] += coefficients [n × count] · rows [count × dim]: two target
 * rows by four of `rows` per pass, so that each load of a row serves both
 * targets (about 1.7× one target at a time in V8; float64 only, so that the
 * loads stay monomorphic).
 */
function accumulateRows(
  target: Float64Array,
  n: number,
  rows: Float64Array,
  coefficients: Float64Array,
  count: number,
  dim: number,
): void {
  let i = 0;
  for (; i + 1 < n; i += 2) {
    const t0 = i * dim;
    const t1 = t0 + dim;
    const c0 = i * count;
    const c1 = c0 + count;
    let j = 0;
    for (; j + 3 < count; j += 4) {
      const a0 = coefficients[c0 + j]!;
      const a1 = coefficients[c0 + j + 1]!;
      const a2 = coefficients[c0 + j + 2]!;
      const a3 = coefficients[c0 + j + 3]!;
      const b0 = coefficients[c1 + j]!;
      const b1 = coefficients[c1 + j + 1]!;
      const b2 = coefficients[c1 + j + 2]!;
      const b3 = coefficients[c1 + j + 3]!;
      const r0 = j * dim;
      const r1 = r0 + dim;
      const r2 = r1 + dim;
      const r3 = r2 + dim;
      for (let f = 0; f < dim; f++) {
        const y0 = rows[r0 + f]!;
        const y1 = rows[r1 + f]!;
        const y2 = rows[r2 + f]!;
        const y3 = rows[r3 + f]!;
        target[t0 + f] = target[t0 + f]! + a0 * y0 + a1 * y1 + a2 * y2 + a3 * y3;
        target[t1 + f] = target[t1 + f]! + b0 * y0 + b1 * y1 + b2 * y2 + b3 * y3;
      }
    }
    for (; j < count; j++) {
      const a = coefficients[c0 + j]!;
      const b = coefficients[c1 + j]!;
      const r = j * dim;
      for (let f = 0; f < dim; f++) {
        const y = rows[r + f]!;
        target[t0 + f] = target[t0 + f]! + a * y;
        target[t1 + f] = target[t1 + f]! + b * y;
      }
    }
  }
  if (i < n) accumulateRow(target, i * dim, rows, coefficients, i * count, count, dim);
}

/** target[at + f] += Σ_j coefficients[cAt + j] · rows[j·dim + f]. */
function accumulateRow(
  target: Float64Array,
  at: number,
  rows: Float64Array,
  coefficients: Float64Array,
  cAt: number,
  count: number,
  dim: number,
): void {
  let j = 0;
  for (; j + 3 < count; j += 4) {
    const c0 = coefficients[cAt + j]!;
    const c1 = coefficients[cAt + j + 1]!;
    const c2 = coefficients[cAt + j + 2]!;
    const c3 = coefficients[cAt + j + 3]!;
    const r0 = j * dim;
    const r1 = r0 + dim;
    const r2 = r1 + dim;
    const r3 = r2 + dim;
    for (let f = 0; f < dim; f++)
      target[at + f]! +=
        c0 * rows[r0 + f]! + c1 * rows[r1 + f]! + c2 * rows[r2 + f]! + c3 * rows[r3 + f]!;
  }
  for (; j < count; j++) {
    const c = coefficients[cAt + j]!;
    const r = j * dim;
    for (let f = 0; f < dim; f++) target[at + f]! += c * rows[r + f]!;
  }
}

/** A v for rows v [n, F]: v − ((v Uᵀ) · e/(e + λ)) U (SeenStatistics.whiten). */
function whiten(
  rows: Float64Array,
  n: number,
  u: Float64Array,
  shrink: Float64Array,
  dim: number,
): Float64Array {
  const rank = shrink.length;
  const coefficients = rowProducts(rows, n, u, rank, dim);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < rank; j++) coefficients[i * rank + j]! *= -shrink[j]!;
  const out = rows.slice();
  accumulateRows(out, n, u, coefficients, rank, dim);
  return out;
}

/**
 * Eigenpairs of a symmetric n × n matrix by cyclic Jacobi rotations (for the
 * small Gram matrices of one class's images): values descending, vectors
 * [n, n] with eigenvector i in column i.
 */
export function symmetricEigen(
  matrix: Float64Array,
  n: number,
): { values: Float64Array; vectors: Float64Array } {
  const a = matrix.slice();
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  for (let sweep = 0; sweep < 64; sweep++) {
    let off = 0;
    let total = 0;
    for (let p = 0; p < n; p++)
      for (let q = 0; q < n; q++) {
        const x = a[p * n + q]! ** 2;
        total += x;
        if (p !== q) off += x;
      }
    if (off <= 1e-26 * total) break; // off-diagonal at ~1e-13 of the matrix: converged
    for (let p = 0; p < n - 1; p++)
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q]!;
        if (apq === 0) continue;
        // The rotation that zeroes a_pq (Numerical Recipes eq. 11.1.8–11.1.10).
        const theta = (a[q * n + q]! - a[p * n + p]!) / (2 * apq);
        const t =
          Math.abs(theta) > 1e150
            ? 1 / (2 * theta)
            : (theta >= 0 ? 1 : -1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        const tau = s / (1 + c);
        // a ← Jᵀ a J, touching only rows and columns p, q (a stays symmetric).
        a[p * n + p]! -= t * apq;
        a[q * n + q]! += t * apq;
        a[p * n + q] = a[q * n + p] = 0;
        for (let k = 0; k < n; k++) {
          if (k === p || k === q) continue;
          const akp = a[k * n + p]!;
          const akq = a[k * n + q]!;
          a[k * n + p] = a[p * n + k] = akp - s * (akq + tau * akp);
          a[k * n + q] = a[q * n + k] = akq + s * (akp - tau * akq);
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p]!;
          const vkq = v[k * n + q]!;
          v[k * n + p] = vkp - s * (vkq + tau * vkp);
          v[k * n + q] = vkq + s * (vkp - tau * vkq);
        }
      }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort(
    (i, j) => a[j * n + j]! - a[i * n + i]!,
  );
  const values = Float64Array.from(order, (i) => a[i * n + i]!);
  const vectors = new Float64Array(n * n);
  for (let k = 0; k < n; k++) order.forEach((i, col) => (vectors[k * n + col] = v[k * n + i]!));
  return { values, vectors };
}

/**
 * The top `count` principal directions of one class's images x [n, F] (mean μ)
 * into out[at + i · rowStride …] (left zero where the centred images have lower
 * rank), from the n × n Gram matrix of the centred images, (x − μ)(x − μ)ᵀ =
 * G − r1ᵀ − 1rᵀ + t with G = x xᵀ, r its row means and t their mean: v = (x −
 * μ)ᵀu / s, each with its largest-magnitude coordinate positive
 * (principal_directions).
 */
function principalDirections(
  images: Float64Array,
  n: number,
  mean: Float64Array,
  dim: number,
  count: number,
  out: Float64Array,
  at: number,
  rowStride: number,
): void {
  if (n < 2) return;
  const gram = rowProducts(images, n, images, n, dim, true);
  const rowMeans = new Float64Array(n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) rowMeans[i]! += gram[i * n + j]! / n;
  const total = rowMeans.reduce((a, r) => a + r, 0) / n;
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) gram[i * n + j]! += total - rowMeans[i]! - rowMeans[j]!;
  const { values, vectors } = symmetricEigen(gram, n);
  const singular = Float64Array.from(values, (x) => Math.sqrt(Math.max(x, 0)));
  const cutoff = RANK_CUTOFF * Math.max(singular[0]!, 1e-12);
  const keep = Math.min(count, singular.filter((s) => s > cutoff).length);
  const coefficients = new Float64Array(n);
  for (let i = 0; i < keep; i++) {
    let sum = 0;
    for (let m = 0; m < n; m++) sum += coefficients[m] = vectors[m * n + i]! / singular[i]!;
    const row = at + i * rowStride;
    accumulateRow(out, row, images, coefficients, 0, n, dim);
    for (let f = 0; f < dim; f++) out[row + f]! -= sum * mean[f]!;
    let largest = 0;
    for (let f = 1; f < dim; f++)
      if (Math.abs(out[row + f]!) > Math.abs(out[row + largest]!)) largest = f;
    if (out[row + largest]! < 0) for (let f = 0; f < dim; f++) out[row + f] = -out[row + f]!;
  }
}

/**
 * Twice-repeated modified Gram–Schmidt of `count` rows of `vectors` (row k at
 * vectorsAt + k · stride) into q [count, dim] (from qAt): a zero row where a
 * unit-scaled row lies within DEPENDENT of the span of those before it; factors
 * [count, count] (from factorsAt): unit row i · q row j (gram_schmidt).
 */
function gramSchmidt(
  vectors: Float64Array,
  vectorsAt: number,
  stride: number,
  count: number,
  dim: number,
  q: Float64Array,
  qAt: number,
  factors: Float64Array,
  factorsAt: number,
  unit: Float64Array, // scratch [count, dim]
): void {
  for (let k = 0; k < count; k++) {
    const from = vectorsAt + k * stride;
    const scale = 1 / Math.max(Math.sqrt(dot(vectors, from, vectors, from, dim)), 1e-12);
    for (let f = 0; f < dim; f++) unit[k * dim + f] = vectors[from + f]! * scale;
  }
  for (let k = 0; k < count; k++) {
    const row = qAt + k * dim;
    for (let f = 0; f < dim; f++) q[row + f] = unit[k * dim + f]!;
    for (let pass = 0; pass < 2; pass++)
      for (let j = 0; j < k; j++) {
        const other = qAt + j * dim;
        const d = dot(q, row, q, other, dim);
        if (d !== 0) for (let f = 0; f < dim; f++) q[row + f]! -= d * q[other + f]!;
      }
    const norm = Math.sqrt(dot(q, row, q, row, dim));
    const scale = norm > DEPENDENT ? 1 / Math.max(norm, 1e-12) : 0;
    for (let f = 0; f < dim; f++) q[row + f]! *= scale;
  }
  factors.set(rowProducts(unit, count, q.subarray(qAt, qAt + count * dim), count, dim), factorsAt);
}

/** U as float64, converted once per statistics object. */
const eigenvectorCache = new WeakMap<Float32Array, Float64Array>();
function eigenvectors64(stats: SeenStatistics): Float64Array {
  let u = eigenvectorCache.get(stats.eigenvectors);
  if (u === undefined) {
    u = new Float64Array(stats.eigenvectors);
    eigenvectorCache.set(stats.eigenvectors, u);
  }
  return u;
}

function checkStatistics(stats: SeenStatistics): void {
  const { rank, dim } = stats;
  if (stats.eigenvectors.length !== rank * dim)
    throw new Error(
      `seen statistics: eigenvectors hold ${stats.eigenvectors.length} values, not rank × dim = ${rank} × ${dim}`,
    );
  if (stats.eigenvalues.length !== rank)
    throw new Error(`seen statistics: ${stats.eigenvalues.length} eigenvalues for rank ${rank}`);
  if (stats.variance.length !== dim)
    throw new Error(`seen statistics: variance has ${stats.variance.length} values for dim ${dim}`);
}

function checkSpec(spec: SupportSpec, stats: SeenStatistics): BasisDirection[] {
  const allowed: readonly string[] = BASIS_DIRECTIONS;
  for (const name of spec.basis)
    if (!allowed.includes(name))
      throw new Error(
        `unknown basis direction '${name}'; choose from ${BASIS_DIRECTIONS.join(', ')}`,
      );
  if (spec.basis.length === 0) throw new Error('a basis needs at least one direction');
  if (!Number.isInteger(spec.globalRank) || spec.globalRank < 0 || spec.globalRank > stats.rank)
    throw new Error(
      `global rank ${spec.globalRank} is not an integer in 0…${stats.rank} (the statistics' rank)`,
    );
  if (!(spec.referenceScale > 0) || !Number.isFinite(spec.referenceScale))
    throw new Error(`reference scale ${spec.referenceScale} is not a positive number`);
  if (!(spec.shrinkage > 0)) throw new Error(`shrinkage ${spec.shrinkage} is not positive`);
  return spec.basis as BasisDirection[];
}

/**
 * Class means μ, their mean m, μ − m, A(μ − m) and the reference head
 * R = s · A(μ − m), r = −½ s A(μ − m) · (μ + m) of images [N, F] stored class
 * after class (`counts[c]` rows of class c from row `starts[c]`).
 */
function referenceParts(
  images: Float64Array,
  counts: readonly number[],
  starts: readonly number[],
  stats: SeenStatistics,
  spec: SupportSpec,
) {
  const { dim } = stats;
  const classes = counts.length;
  // Class means μ [C, F], their mean m, μ − m.
  const means = new Float64Array(classes * dim);
  for (let c = 0; c < classes; c++) {
    const k = counts[c]!;
    for (let i = 0; i < k; i++) {
      const row = (starts[c]! + i) * dim;
      for (let f = 0; f < dim; f++) means[c * dim + f]! += images[row + f]!;
    }
    for (let f = 0; f < dim; f++) means[c * dim + f]! /= k;
  }
  const centre = new Float64Array(dim);
  for (let c = 0; c < classes; c++) for (let f = 0; f < dim; f++) centre[f]! += means[c * dim + f]!;
  for (let f = 0; f < dim; f++) centre[f]! /= classes;
  const diff = new Float64Array(classes * dim);
  for (let c = 0; c < classes; c++)
    for (let f = 0; f < dim; f++) diff[c * dim + f] = means[c * dim + f]! - centre[f]!;

  // The reference head: R = s · A(μ − m), r = −½ s A(μ − m) · (μ + m).
  const u = eigenvectors64(stats);
  const shrink = Float64Array.from(stats.eigenvalues, (e) => e / (e + spec.shrinkage));
  const lda = whiten(diff, classes, u, shrink, dim);
  const s = spec.referenceScale;
  const weight = new Float32Array(classes * dim);
  const bias = new Float32Array(classes);
  const bias64 = new Float64Array(classes);
  for (let c = 0; c < classes; c++) {
    let b = 0;
    for (let f = 0; f < dim; f++) {
      weight[c * dim + f] = s * lda[c * dim + f]!;
      b += lda[c * dim + f]! * (means[c * dim + f]! + centre[f]!);
    }
    bias64[c] = -0.5 * s * b;
    bias[c] = bias64[c]!;
  }

  return { means, centre, diff, u, lda, weight, bias, bias64 };
}

/**
 * The closed-form reference head alone (without basis or conditions) of
 * per-class unit-norm images [k_c × F]: the refine's cross-validation prior
 * for a fold, made from the fold's training images only.
 */
export function referenceHead(
  support: readonly Float32Array[],
  stats: SeenStatistics,
  spec: SupportSpec,
): { weight: Float32Array; bias: Float32Array } {
  checkStatistics(stats);
  checkSpec(spec, stats);
  const { images, counts, starts } = stacked(support, stats.dim);
  const { weight, bias } = referenceParts(images, counts, starts, stats, spec);
  return { weight, bias };
}

/**
 * Per-class images [k_c × dim] as one float64 block [N × dim], class after
 * class: each class's image count and its first row.
 */
function stacked(
  support: readonly Float32Array[],
  dim: number,
): { images: Float64Array; counts: number[]; starts: number[] } {
  const counts = support.map((x, c) => {
    const k = x.length / dim;
    if (!Number.isInteger(k) || k < 1)
      throw new Error(
        `class ${c}: ${x.length} values are not one or more images of dim ${dim} (the statistics' dim)`,
      );
    return k;
  });
  const starts: number[] = [];
  let total = 0;
  for (const k of counts) {
    starts.push(total);
    total += k;
  }
  const images = new Float64Array(total * dim);
  support.forEach((x, c) => images.set(x, starts[c]! * dim));
  return { images, counts, starts };
}

/**
 * Reference, basis and conditions of one support (build_support): per class,
 * its unit-norm images [k_c × F] row-major.
 */
export function buildSupport(
  support: readonly Float32Array[],
  stats: SeenStatistics,
  spec: SupportSpec,
): ResidualSupport {
  checkStatistics(stats);
  const names = checkSpec(spec, stats);
  const { dim } = stats;
  const classes = support.length;
  if (classes === 0) throw new Error('a support needs at least one class');
  const { images, counts, starts } = stacked(support, dim); // [N, F], class after class
  const kmax = Math.max(...counts);
  const shots = Math.min(...counts);
  const total = images.length / dim;

  const { means, centre, diff, u, lda, weight, bias, bias64 } = referenceParts(
    images,
    counts,
    starts,
    stats,
    spec,
  );

  // The named directions (basis_vectors), each off the g fixed eigenvectors (v − (v Uᵀ) U with
  // U's first g rows): [K, C, F], a block per direction.
  const g = spec.globalRank;
  const K = names.length;
  const block = classes * dim;
  const offFixed = (rows: Float64Array, n: number) => {
    if (g === 0) return;
    const coefficients = rowProducts(rows, n, u, g, dim);
    for (let i = 0; i < coefficients.length; i++) coefficients[i] = -coefficients[i]!;
    accumulateRows(rows, n, u, coefficients, g, dim);
  };
  // The directions linear in the class means come from the means and their mean off U: [μ; m].
  let linear: Float64Array | undefined;
  const meansOffFixed = () => {
    if (linear === undefined) {
      linear = new Float64Array(block + dim);
      linear.set(means);
      linear.set(centre, block);
      offFixed(linear, classes + 1);
    }
    return linear;
  };
  let principal: Float64Array | undefined; // [2, C, F]
  const principalOffFixed = () => {
    if (principal === undefined) {
      principal = new Float64Array(2 * block);
      for (let c = 0; c < classes; c++) {
        const at = starts[c]! * dim;
        const mean = means.subarray(c * dim, (c + 1) * dim);
        const x = images.subarray(at, at + counts[c]! * dim);
        principalDirections(x, counts[c]!, mean, dim, 2, principal, c * dim, block);
      }
      offFixed(principal, 2 * classes);
    }
    return principal;
  };
  const nearest = nearestClasses(means, classes, dim);
  const vectors = new Float64Array(K * block);
  names.forEach((name, k) => {
    const out = vectors.subarray(k * block, (k + 1) * block);
    switch (name) {
      case 'lda':
        out.set(lda);
        offFixed(out, classes);
        break;
      case 'diag':
        for (let c = 0; c < classes; c++)
          for (let f = 0; f < dim; f++) {
            // A coordinate the seen data never varies in gives no direction (the factory's rule).
            const v = stats.variance[f]!;
            out[c * dim + f] = v > 0 ? diff[c * dim + f]! / v : 0;
          }
        offFixed(out, classes);
        break;
      case 'sign':
        for (let i = 0; i < block; i++) out[i] = Math.sign(diff[i]!);
        offFixed(out, classes);
        break;
      case 'ncm': {
        const p = meansOffFixed();
        for (let c = 0; c < classes; c++)
          for (let f = 0; f < dim; f++) out[c * dim + f] = p[c * dim + f]! - p[block + f]!;
        break;
      }
      case 'mean':
        out.set(meansOffFixed().subarray(0, block));
        break;
      case 'centre': {
        const p = meansOffFixed().subarray(block);
        for (let c = 0; c < classes; c++) out.set(p, c * dim);
        break;
      }
      case 'nearest': {
        const p = meansOffFixed();
        for (let c = 0; c < classes; c++) {
          const n = nearest[c]!;
          if (n >= 0)
            for (let f = 0; f < dim; f++) out[c * dim + f] = p[n * dim + f]! - p[c * dim + f]!;
        }
        break;
      }
      case 'pc1':
      case 'pc2': {
        const i = name === 'pc1' ? 0 : 1;
        out.set(principalOffFixed().subarray(i * block, (i + 1) * block));
        break;
      }
    }
  });

  // Gram–Schmidt per class: q [C, K, F].
  const q = new Float64Array(classes * K * dim);
  const factors64 = new Float64Array(classes * K * K);
  const scratch = new Float64Array(K * dim);
  for (let c = 0; c < classes; c++)
    gramSchmidt(vectors, c * dim, block, K, dim, q, c * K * dim, factors64, c * K * K, scratch);
  const row = (c: number, k: number) => (c * K + k) * dim;

  // Q [C, g + K, F]: the fixed rows, then the class's own.
  const rows = g + K;
  const basis = new Float32Array(classes * rows * dim);
  for (let c = 0; c < classes; c++) {
    basis.set(stats.eigenvectors.subarray(0, g * dim), c * rows * dim);
    basis.set(q.subarray(row(c, 0), row(c, K)), (c * rows + g) * dim);
  }

  // Dot products with every image: the g fixed rows, the unit class means (cosine logits) and
  // A(μ_n − m) (reference logits in units of s) [N, g + 2C]; per class, its own rows (below). And
  // of the centred means and the centre [μ − m; m] with the fixed rows [C + 1, g] and with every
  // class's own rows [C + 1, C·K].
  const width = g + 2 * classes;
  const scorers = new Float64Array(width * dim);
  scorers.set(u.subarray(0, g * dim));
  for (let c = 0; c < classes; c++) {
    const scale = 1 / Math.max(Math.sqrt(dot(means, c * dim, means, c * dim, dim)), 1e-12);
    for (let f = 0; f < dim; f++) scorers[(g + c) * dim + f] = means[c * dim + f]! * scale;
  }
  scorers.set(lda, (g + classes) * dim);
  const scores = rowProducts(images, total, scorers, width, dim);
  const centred = new Float64Array((classes + 1) * dim); // [μ − m; m]
  centred.set(diff);
  centred.set(centre, classes * dim);
  const fixedCoords = rowProducts(centred, classes + 1, u, g, dim);
  const ownCoords = rowProducts(centred, classes + 1, q, classes * K, dim);
  // Own logit − best other logit, logits scores[at + n] + offset · r_n; 0 for a lone class.
  const margin = (at: number, own: number, offset: number) => {
    if (classes === 1) return 0;
    let best = -Infinity;
    for (let n = 0; n < classes; n++)
      if (n !== own) best = Math.max(best, scores[at + n]! + offset * bias64[n]!);
    return scores[at + own]! + offset * bias64[own]! - best;
  };

  // Per image: its coordinates in its class's basis, distance to its class mean, and margins
  // under the class means (cosine) and under the reference head (in units of s).
  const P = rows + 3;
  const imageFeatures = new Float32Array(classes * kmax * P);
  const imageMask = new Float32Array(classes * kmax);
  for (let c = 0; c < classes; c++) {
    const k = counts[c]!;
    const at = starts[c]! * dim;
    const own = q.subarray(row(c, 0), row(c, K));
    const coords = rowProducts(images.subarray(at, at + k * dim), k, own, K, dim); // [k, K]
    const centreCoords = classes * classes * K + c * K; // m · Q_c's own rows in ownCoords
    for (let i = 0; i < k; i++) {
      const out = (c * kmax + i) * P;
      const image = (starts[c]! + i) * width;
      for (let j = 0; j < g; j++)
        imageFeatures[out + j] =
          CONDITION_SCALE * (scores[image + j]! - fixedCoords[classes * g + j]!);
      for (let j = 0; j < K; j++)
        imageFeatures[out + g + j] =
          CONDITION_SCALE * (coords[i * K + j]! - ownCoords[centreCoords + j]!);
      let spread = 0;
      for (let f = 0; f < dim; f++)
        spread += (images[at + i * dim + f]! - means[c * dim + f]!) ** 2;
      imageFeatures[out + rows] = Math.sqrt(spread);
      imageFeatures[out + rows + 1] = CONDITION_SCALE * margin(image + g, c, 0);
      // (x · s A(μ_n − m) + r_n) / s = x · A(μ_n − m) + r_n / s
      imageFeatures[out + rows + 2] =
        CONDITION_SCALE * margin(image + g + classes, c, 1 / spec.referenceScale);
      imageMask[c * kmax + i] = 1;
    }
  }

  // Per class: the factors' upper triangle, the other classes' centred means in its basis (max, min,
  // mean), its own mean's distance from m, the shot and class counts.
  const triangle = (K * (K + 1)) / 2;
  const Qc = triangle + 3 * rows + 5;
  const classFeatures = new Float32Array(classes * Qc);
  // (μ_n − m) · Q_c row j
  const others = (c: number, n: number, j: number) =>
    j < g ? fixedCoords[n * g + j]! : ownCoords[(n * classes + c) * K + j - g]!;
  for (let c = 0; c < classes; c++) {
    const out = c * Qc;
    let t = 0;
    for (let k = 0; k < K; k++)
      for (let j = k; j < K; j++) classFeatures[out + t++] = factors64[c * K * K + k * K + j]!;
    for (let j = 0; j < rows; j++) {
      let max = -Infinity;
      let min = Infinity;
      let sum = 0;
      for (let n = 0; n < classes; n++) {
        if (n === c) continue;
        const x = others(c, n, j);
        max = Math.max(max, x);
        min = Math.min(min, x);
        sum += x;
      }
      const single = classes === 1;
      classFeatures[out + triangle + j] = single ? 0 : CONDITION_SCALE * max;
      classFeatures[out + triangle + rows + j] = single ? 0 : CONDITION_SCALE * min;
      classFeatures[out + triangle + 2 * rows + j] = single
        ? 0
        : (CONDITION_SCALE * sum) / (classes - 1);
    }
    const tail = out + triangle + 3 * rows;
    classFeatures[tail] = CONDITION_SCALE * Math.sqrt(dot(diff, c * dim, diff, c * dim, dim));
    classFeatures[tail + 1] = Math.log(shots);
    classFeatures[tail + 2] = 1 / shots;
    classFeatures[tail + 3] = Math.log(classes);
    classFeatures[tail + 4] = Math.log(counts[c]!);
  }

  return {
    classes,
    dim,
    directions: K,
    basisRows: rows,
    weight,
    bias,
    basis,
    factors: new Float32Array(factors64),
    kmax,
    imageFeatureSize: P,
    imageFeatures,
    imageMask,
    classFeatureSize: Qc,
    classFeatures,
    shots,
  };
}

/** Per class, the class whose mean is nearest (the first of equals), −1 for a lone class. */
function nearestClasses(means: Float64Array, classes: number, dim: number): Int32Array {
  const nearest = new Int32Array(classes).fill(-1);
  for (let c = 0; c < classes; c++) {
    let best = Infinity;
    for (let n = 0; n < classes; n++) {
      if (n === c) continue;
      let d2 = 0;
      for (let f = 0; f < dim; f++) d2 += (means[c * dim + f]! - means[n * dim + f]!) ** 2;
      if (d2 < best) {
        best = d2;
        nearest[c] = n;
      }
    }
  }
  return nearest;
}

function checkScale(scale: ResidualScale, support: ResidualSupport): void {
  const n = scale.weight.length;
  if (n !== support.basisRows && n !== 1)
    throw new Error(
      `residual scale: ${n} weight values for a basis of ${support.basisRows} rows (or one for all)`,
    );
}

function sampleCount(values: number, perSample: number, what: string): number {
  const samples = values / perSample;
  if (!Number.isInteger(samples) || samples < 1)
    throw new Error(`${what}: ${values} values are not one or more samples of ${perSample}`);
  return samples;
}

/**
 * Residual coordinates [S, C, g + K + 1] → heads W [S, C, F], b [S, C]:
 * W_c = R_c + Σ_k a_k σ_k Q_ck, b_c = r_c + a_last σ_b (decode_residual).
 */
export function decodeResidual(
  coords: Float32Array | Float64Array,
  support: ResidualSupport,
  scale: ResidualScale,
): ResidualHeads {
  checkScale(scale, support);
  const { classes, dim, basisRows: rows, basis } = support;
  const width = rows + 1;
  const samples = sampleCount(coords.length, classes * width, 'residual coordinates');
  const sigma = (k: number) => scale.weight[scale.weight.length === 1 ? 0 : k]!;
  const weight = new Float32Array(samples * classes * dim);
  const bias = new Float32Array(samples * classes);
  // Per class: its S heads [S, F] = R_c + (a ⊙ σ) [S, g + K] · Q_c.
  const basisRows = new Float64Array(rows * dim);
  const heads = new Float64Array(samples * dim);
  const coefficients = new Float64Array(samples * rows);
  for (let c = 0; c < classes; c++) {
    basisRows.set(basis.subarray(c * rows * dim, (c + 1) * rows * dim));
    for (let sample = 0; sample < samples; sample++) {
      const a = (sample * classes + c) * width;
      for (let k = 0; k < rows; k++) coefficients[sample * rows + k] = coords[a + k]! * sigma(k);
      heads.set(support.weight.subarray(c * dim, (c + 1) * dim), sample * dim);
      bias[sample * classes + c] = support.bias[c]! + coords[a + rows]! * scale.bias;
    }
    accumulateRows(heads, samples, basisRows, coefficients, rows, dim);
    for (let sample = 0; sample < samples; sample++)
      weight.set(heads.subarray(sample * dim, (sample + 1) * dim), (sample * classes + c) * dim);
  }
  return { weight, bias };
}

/**
 * Heads W [S, C, F], b [S, C] → residual coordinates [S, C, g + K + 1] over the
 * support's reference (encode_residual); decodeResidual inverts it on span(Q_c).
 */
export function encodeResidual(
  heads: ResidualHeads,
  support: ResidualSupport,
  scale: ResidualScale,
): Float64Array {
  checkScale(scale, support);
  const { classes, dim, basisRows: rows, basis } = support;
  const width = rows + 1;
  const samples = sampleCount(heads.weight.length, classes * dim, 'head weights');
  if (heads.bias.length !== samples * classes)
    throw new Error(
      `head biases: ${heads.bias.length} values for ${samples} samples of ${classes} classes`,
    );
  const sigma = (k: number) => scale.weight[scale.weight.length === 1 ? 0 : k]!;
  const coords = new Float64Array(samples * classes * width);
  // Per class: (W − R_c) [S, F] · Q_cᵀ [F, g + K], divided by σ.
  const basisRows = new Float64Array(rows * dim);
  const deltas = new Float64Array(samples * dim);
  for (let c = 0; c < classes; c++) {
    basisRows.set(basis.subarray(c * rows * dim, (c + 1) * rows * dim));
    for (let sample = 0; sample < samples; sample++) {
      const w = (sample * classes + c) * dim;
      for (let f = 0; f < dim; f++)
        deltas[sample * dim + f] = heads.weight[w + f]! - support.weight[c * dim + f]!;
    }
    const projections = rowProducts(deltas, samples, basisRows, rows, dim);
    for (let sample = 0; sample < samples; sample++) {
      const a = (sample * classes + c) * width;
      for (let k = 0; k < rows; k++) coords[a + k] = projections[sample * rows + k]! / sigma(k);
      coords[a + rows] = (heads.bias[sample * classes + c]! - support.bias[c]!) / scale.bias;
    }
  }
  return coords;
}
