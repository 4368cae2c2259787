import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  buildSupport,
  referenceHead,
  decodeResidual,
  encodeResidual,
  symmetricEigen,
  type ResidualScale,
  type ResidualSupport,
  type SeenStatistics,
  type SupportSpec,
} from './residual-support';
import { Mulberry32 } from './rng';
import { array, integer, number, object, parse, string } from './schema';

const tensor = object({ shape: array(integer), data: array(number) });
const fixtureSchema = object({
  stats: object({ eigenvectors: tensor, eigenvalues: array(number), variance: array(number) }),
  spec: object({
    shrinkage: number,
    basis: array(string),
    global_rank: integer,
    reference_scale: number,
  }),
  residual_scale: object({ weight: array(number), bias: number }),
  supports: array(
    object({
      name: string,
      images: array(array(number)),
      weight: tensor,
      bias: tensor,
      basis: tensor,
      factors: tensor,
      image_features: tensor,
      image_mask: tensor,
      class_features: tensor,
      shots: integer,
      residual: tensor,
      decoded_weight: tensor,
      decoded_bias: tensor,
    }),
  ),
});

const fixture = parse(
  fixtureSchema,
  JSON.parse(
    readFileSync(new URL('../../models/fixtures/residual-support.json', import.meta.url), 'utf8'),
  ),
  'residual-support.json',
);
const [rank, dim] = fixture.stats.eigenvectors.shape as [number, number];
const stats: SeenStatistics = {
  eigenvectors: Float32Array.from(fixture.stats.eigenvectors.data),
  eigenvalues: Float32Array.from(fixture.stats.eigenvalues),
  variance: Float32Array.from(fixture.stats.variance),
  rank,
  dim,
};
const spec: SupportSpec = {
  shrinkage: fixture.spec.shrinkage,
  basis: fixture.spec.basis,
  globalRank: fixture.spec.global_rank,
  referenceScale: fixture.spec.reference_scale,
};
const residualScale: ResidualScale = {
  weight: Float32Array.from(fixture.residual_scale.weight),
  bias: fixture.residual_scale.bias,
};

/**
 * max |a − b| / max(1, max |b|): relative for tensors of large values, absolute
 * for small ones (the factory computes in float32, the engine in float64).
 */
function error(actual: ArrayLike<number>, expected: { shape: number[]; data: number[] }): number {
  const size = expected.shape.reduce((a, b) => a * b, 1);
  expect(actual.length).toBe(size);
  let diff = 0;
  let scale = 1;
  for (let i = 0; i < size; i++) {
    diff = Math.max(diff, Math.abs(actual[i]! - expected.data[i]!));
    scale = Math.max(scale, Math.abs(expected.data[i]!));
  }
  return diff / scale;
}

const TOLERANCE = 1e-4;

describe('buildSupport replays the factory (residual-support.json)', () => {
  it.each(fixture.supports.map((s) => [s.name, s] as const))('%s', (_, recorded) => {
    const support = buildSupport(
      recorded.images.map((x) => Float32Array.from(x)),
      stats,
      spec,
    );
    const [classes, rows] = recorded.basis.shape as [number, number];
    expect([support.classes, support.basisRows, support.dim]).toEqual([classes, rows, dim]);
    expect(support.kmax).toBe(recorded.image_mask.shape[1]);
    expect(support.imageFeatureSize).toBe(recorded.image_features.shape[2]);
    expect(support.classFeatureSize).toBe(recorded.class_features.shape[1]);
    expect(support.shots).toBe(recorded.shots);
    expect(Array.from(support.imageMask)).toEqual(recorded.image_mask.data);
    const fields = {
      weight: [support.weight, recorded.weight],
      bias: [support.bias, recorded.bias],
      basis: [support.basis, recorded.basis],
      factors: [support.factors, recorded.factors],
      imageFeatures: [support.imageFeatures, recorded.image_features],
      classFeatures: [support.classFeatures, recorded.class_features],
    } as const;
    for (const [name, [actual, expected]] of Object.entries(fields))
      expect(error(actual, expected), name).toBeLessThan(TOLERANCE);
    const decoded = decodeResidual(
      Float32Array.from(recorded.residual.data),
      support,
      residualScale,
    );
    expect(error(decoded.weight, recorded.decoded_weight), 'decoded weight').toBeLessThan(
      TOLERANCE,
    );
    expect(error(decoded.bias, recorded.decoded_bias), 'decoded bias').toBeLessThan(TOLERANCE);
    // The reference alone (the refine's fold prior) is the same head, without the rest.
    const reference = referenceHead(
      recorded.images.map((x) => Float32Array.from(x)),
      stats,
      spec,
    );
    expect(error(reference.weight, recorded.weight), 'referenceHead weight').toBeLessThan(
      TOLERANCE,
    );
    expect(error(reference.bias, recorded.bias), 'referenceHead bias').toBeLessThan(TOLERANCE);
  });
});

describe('residual coordinates', () => {
  const recorded = fixture.supports.find((s) => s.name === 'mixed')!;
  const support = buildSupport(
    recorded.images.map((x) => Float32Array.from(x)),
    stats,
    spec,
  );
  const width = support.basisRows + 1;
  const live = (c: number, k: number) => {
    let norm = 0;
    for (let f = 0; f < dim; f++)
      norm += support.basis[(c * support.basisRows + k) * dim + f]! ** 2;
    return norm > 0.5;
  };

  it('decode(encode(head)) is the head on the span; encode(decode(a)) is a (0 on dropped rows)', () => {
    const rng = new Mulberry32(5);
    const coords = rng.normals(3 * support.classes * width);
    const heads = decodeResidual(coords, support, residualScale);
    const back = encodeResidual(heads, support, residualScale);
    let dead = 0;
    for (let s = 0; s < 3; s++)
      for (let c = 0; c < support.classes; c++)
        for (let k = 0; k < width; k++) {
          const i = (s * support.classes + c) * width + k;
          if (k === support.basisRows || live(c, k)) expect(back[i]).toBeCloseTo(coords[i]!, 4);
          else {
            expect(back[i]).toBe(0);
            dead++;
          }
        }
    expect(dead).toBeGreaterThan(0); // the one-image class has no principal directions
    const again = decodeResidual(back, support, residualScale);
    let worst = 0;
    for (let i = 0; i < heads.weight.length; i++)
      worst = Math.max(worst, Math.abs(again.weight[i]! - heads.weight[i]!));
    for (let i = 0; i < heads.bias.length; i++)
      worst = Math.max(worst, Math.abs(again.bias[i]! - heads.bias[i]!));
    expect(worst).toBeLessThan(1e-4);
  });

  it('decode(encode(head)) is the projection onto the span: applying it twice changes nothing', () => {
    const rng = new Mulberry32(6);
    const head = {
      weight: Float32Array.from(rng.normals(support.classes * dim)),
      bias: Float32Array.from(rng.normals(support.classes)),
    };
    const projected = decodeResidual(
      encodeResidual(head, support, residualScale),
      support,
      residualScale,
    );
    const again = decodeResidual(
      encodeResidual(projected, support, residualScale),
      support,
      residualScale,
    );
    for (let i = 0; i < projected.weight.length; i++)
      expect(again.weight[i]).toBeCloseTo(projected.weight[i]!, 5);
    for (let c = 0; c < support.classes; c++)
      expect(projected.bias[c]).toBeCloseTo(head.bias[c]!, 5);
  });
});

describe('checks', () => {
  const images = fixture.supports[0]!.images.map((x) => Float32Array.from(x));

  it('names the allowed directions for an unknown basis name', () => {
    expect(() => buildSupport(images, stats, { ...spec, basis: ['lda', 'pc3'] })).toThrow(
      /unknown basis direction 'pc3'; choose from lda, ncm, mean, centre, diag, sign, pc1, pc2, nearest/,
    );
  });

  it('rejects mismatched dimensions', () => {
    expect(() => buildSupport([images[0]!.subarray(1)], stats, spec)).toThrow(/dim 24/);
    expect(() => buildSupport(images, { ...stats, dim: 25 }, spec)).toThrow(/eigenvectors/);
    expect(() => buildSupport(images, stats, { ...spec, globalRank: rank + 1 })).toThrow(
      /global rank/,
    );
    const support = buildSupport(images, stats, spec);
    expect(() => decodeResidual(new Float32Array(5), support, residualScale)).toThrow(
      /residual coordinates/,
    );
    expect(() =>
      decodeResidual(new Float32Array(support.classes * (support.basisRows + 1)), support, {
        weight: new Float32Array(2),
        bias: 1,
      }),
    ).toThrow(/residual scale/);
  });
});

it('symmetricEigen reconstructs a symmetric matrix, values descending', () => {
  const n = 7;
  const rng = new Mulberry32(3);
  const x = rng.normals(n * n);
  const m = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++)
      for (let k = 0; k < n; k++) m[i * n + j]! += x[i * n + k]! * x[j * n + k]!;
  const { values, vectors } = symmetricEigen(m, n);
  for (let i = 1; i < n; i++) expect(values[i]).toBeLessThanOrEqual(values[i - 1]!);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += vectors[i * n + k]! * values[k]! * vectors[j * n + k]!;
      expect(s).toBeCloseTo(m[i * n + j]!, 9);
    }
});

/** Random statistics and a support of the production shape (F = 1792, r = 128, g = 32). */
function productionShape(classes: number, perClass: number): ResidualSupport {
  const F = 1792;
  const r = 128;
  const rng = new Mulberry32(9);
  const u = Float64Array.from(rng.normals(r * F));
  for (let i = 0; i < r; i++) {
    for (let j = 0; j < i; j++) {
      let d = 0;
      for (let f = 0; f < F; f++) d += u[i * F + f]! * u[j * F + f]!;
      for (let f = 0; f < F; f++) u[i * F + f]! -= d * u[j * F + f]!;
    }
    let norm = 0;
    for (let f = 0; f < F; f++) norm += u[i * F + f]! ** 2;
    for (let f = 0; f < F; f++) u[i * F + f]! /= Math.sqrt(norm);
  }
  const big: SeenStatistics = {
    eigenvectors: Float32Array.from(u),
    eigenvalues: Float32Array.from({ length: r }, (_, i) => 1e-2 * Math.exp(-i / 30)),
    variance: Float32Array.from({ length: F }, () => 2e-4 + 1e-3 * rng.uniform()),
    rank: r,
    dim: F,
  };
  const support = Array.from({ length: classes }, () => {
    const centre = rng.normals(F);
    const x = new Float32Array(perClass * F);
    for (let i = 0; i < perClass; i++) {
      let norm = 0;
      const row = Float64Array.from(centre, (v) => v + 0.7 * rng.normal());
      for (const v of row) norm += v * v;
      for (let f = 0; f < F; f++) x[i * F + f] = row[f]! / Math.sqrt(norm);
    }
    return x;
  });
  const release = ['lda', 'mean', 'centre', 'diag', 'sign', 'pc1', 'pc2', 'nearest'];
  return buildSupport(support, big, {
    shrinkage: 3e-4,
    basis: release,
    globalRank: 32,
    referenceScale: 50,
  });
}

it('at the production shape every class basis is orthonormal (20 classes × 20 images)', () => {
  const support = productionShape(20, 20);
  const { classes, basisRows: rows, dim: F, basis } = support;
  expect([classes, rows, support.kmax, support.shots]).toEqual([20, 40, 20, 20]);
  let worst = 0; // largest |Q_c Q_cᵀ − I|
  for (let c = 0; c < classes; c++)
    for (let i = 0; i < rows; i++)
      for (let j = 0; j <= i; j++) {
        let d = 0;
        for (let f = 0; f < F; f++)
          d += basis[(c * rows + i) * F + f]! * basis[(c * rows + j) * F + f]!;
        worst = Math.max(worst, Math.abs(d - (i === j ? 1 : 0)));
      }
  expect(worst).toBeLessThan(1e-5);
});
