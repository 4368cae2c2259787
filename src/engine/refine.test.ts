import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { headTraceSchema, relativeError, traceSupport } from './generator-check';
import { parse } from './schema';
import {
  accuracy,
  byClass,
  labelled,
  unitNormalise,
  type Head,
  type LabelledFeatures,
} from './heads';
import {
  calibratedLambda,
  chooseLambda,
  DEFAULT_SPEC,
  LAMBDA_GRID,
  refineHead,
  refineHeads,
} from './refine';
import { Mulberry32 } from './rng';

const DIM = 24;

/** `classes` classes of `perClass` unit-norm points scattered around random centres. */
function support(classes: number, perClass: number, seed: number, spread = 0.8): LabelledFeatures {
  const rng = new Mulberry32(seed);
  const centres = Array.from({ length: classes }, () =>
    Array.from({ length: DIM }, () => rng.normal()),
  );
  const rows: number[] = [];
  const labels: number[] = [];
  for (let c = 0; c < classes; c++)
    for (let k = 0; k < perClass; k++) {
      rows.push(...centres[c]!.map((v) => v + spread * rng.normal()));
      labels.push(c);
    }
  return {
    dim: DIM,
    features: unitNormalise(Float32Array.from(rows), DIM),
    labels: Int32Array.from(labels),
  };
}

function randomHead(classes: number, seed: number, scale = 3): Head {
  const rng = new Mulberry32(seed);
  return {
    classes,
    dim: DIM,
    weight: Float32Array.from({ length: classes * DIM }, () => scale * rng.normal()),
    bias: Float32Array.from({ length: classes }, () => rng.normal()),
  };
}

/** The objective's gradient in the full (W, b) space: Σ (p − y) xᵀ + λ (W − W_g), and for b. */
function fullGradient(refined: Head, prior: Head, data: LabelledFeatures, lambda: number): number {
  const { dim, features, labels } = data;
  const C = refined.classes;
  const gw = new Float64Array(C * dim);
  const gb = new Float64Array(C);
  for (let i = 0; i < labels.length; i++) {
    const z = Array.from({ length: C }, (_, c) => {
      let s = refined.bias[c]!;
      for (let j = 0; j < dim; j++) s += refined.weight[c * dim + j]! * features[i * dim + j]!;
      return s;
    });
    const max = Math.max(...z);
    const total = z.reduce((a, v) => a + Math.exp(v - max), 0);
    z.forEach((v, c) => {
      const d = Math.exp(v - max) / total - (labels[i] === c ? 1 : 0);
      for (let j = 0; j < dim; j++) gw[c * dim + j]! += d * features[i * dim + j]!;
      gb[c]! += d;
    });
  }
  for (let k = 0; k < C * dim; k++) gw[k]! += lambda * (refined.weight[k]! - prior.weight[k]!);
  for (let c = 0; c < C; c++) gb[c]! += lambda * (refined.bias[c]! - prior.bias[c]!);
  return Math.max(...gw.map(Math.abs), ...gb.map(Math.abs));
}

describe('refining a generated head toward the support (MAP with the head as prior mean)', () => {
  it('reaches the optimum of the full problem, though it solves in the span of the support', () => {
    const data = support(4, 5, 1);
    const prior = randomHead(4, 2);
    for (const lambda of [0.01, 1, 10]) {
      const { head, gradient } = refineHead(prior, data, { lambda });
      expect(gradient, `λ ${lambda}`).toBeLessThan(1e-6);
      expect(fullGradient(head, prior, data, lambda), `λ ${lambda}`).toBeLessThan(1e-4);
    }
  });

  it('keeps the generated head under a strong prior and fits the support under a weak one', () => {
    const data = support(3, 4, 3);
    const prior = randomHead(3, 4);
    const strong = refineHead(prior, data, { lambda: 1e4 }).head;
    const moved = Math.max(...strong.weight.map((w, k) => Math.abs(w - prior.weight[k]!)));
    expect(moved).toBeLessThan(0.01);
    const weak = refineHead(prior, data, { lambda: 1e-3 }).head;
    expect(accuracy(weak, data)).toBe(1);
    expect(accuracy(prior, data)).toBeLessThan(1);
  });

  it('beats a badly generated head on held-out images', () => {
    const train = support(5, 5, 5, 1.2);
    const query = support(5, 40, 5, 1.2); // same centres (same seed), more images
    const prior = randomHead(5, 6);
    const refined = refineHead(prior, train, { lambda: 0.1 }).head;
    expect(accuracy(refined, query)).toBeGreaterThan(accuracy(prior, query) + 0.2);
  });

  it('copes with duplicate images (a rank-deficient support)', () => {
    const base = support(2, 3, 7);
    const twice: LabelledFeatures = {
      dim: DIM,
      features: Float32Array.from([...base.features, ...base.features]),
      labels: Int32Array.from([...base.labels, ...base.labels]),
    };
    const prior = randomHead(2, 8);
    const a = refineHead(prior, twice, { lambda: 1 }).head;
    expect(fullGradient(a, prior, twice, 1)).toBeLessThan(1e-4);
  });

  it('chooses λ by cross-validation from 3 images a class, else the λ calibrated for the shot count', () => {
    const heads = [randomHead(3, 9), randomHead(3, 10)];
    const spec = { ...DEFAULT_SPEC, lambda_by_shots: { '1': 10, '2': 0.1 } };
    expect(chooseLambda(heads, support(3, 1, 11), 3, spec)).toEqual({
      lambda: 10,
      rule: 'calibrated',
      minImages: 1,
    });
    expect(chooseLambda(heads, support(3, 2, 11), 3, spec).lambda).toBe(0.1);
    const cv = chooseLambda(heads, support(3, 6, 12), 3, spec);
    expect(cv.rule).toBe('cross-validation');
    expect(LAMBDA_GRID).toContain(cv.lambda);
  });

  it('takes the calibrated λ of the largest calibrated shot count not above the images', () => {
    const spec = { ...DEFAULT_SPEC, lambda_by_shots: { '1': 10, '2': 1, '5': 0.1 } };
    expect([1, 2, 3, 4, 5, 9].map((k) => calibratedLambda(spec, k))).toEqual([
      10, 1, 1, 1, 0.1, 0.1,
    ]);
  });

  it('lets cross-validation pick a weak prior for a wrong head and a strong one for a right head', () => {
    const data = support(4, 9, 13, 1.0);
    const wrong = [randomHead(4, 14, 20)];
    // A head pointing at each class's own mean: right, and hard to improve on with 6 images a class.
    const means = new Float32Array(4 * DIM);
    data.labels.forEach((c, i) => {
      for (let j = 0; j < DIM; j++) means[c * DIM + j]! += 20 * data.features[i * DIM + j]!;
    });
    const right = [{ classes: 4, dim: DIM, weight: means, bias: new Float32Array(4) }];
    expect(chooseLambda(wrong, data, 4).lambda).toBeLessThanOrEqual(0.1);
    expect(chooseLambda(right, data, 4).lambda).toBeGreaterThanOrEqual(1);
  });

  it('breaks accuracy ties by validation loss under cv_score accuracy_then_loss', () => {
    // Well-separated classes: every λ classifies the folds perfectly. A timid head (class means × 0.5)
    // is right but unsure; "accuracy" keeps it (the tie's strongest prior), the loss rule sharpens it.
    const data = support(3, 6, 71, 0.3);
    const means = new Float32Array(3 * DIM);
    data.labels.forEach((c, i) => {
      for (let j = 0; j < DIM; j++) means[c * DIM + j]! += (0.5 / 6) * data.features[i * DIM + j]!;
    });
    const timid = [{ classes: 3, dim: DIM, weight: means, bias: new Float32Array(3) }];
    const strongest = Math.max(...LAMBDA_GRID);
    expect(chooseLambda(timid, data, 3).lambda).toBe(strongest);
    const byLoss = { ...DEFAULT_SPEC, cv_score: 'accuracy_then_loss' as const };
    expect(chooseLambda(timid, data, 3, byLoss).lambda).toBeLessThan(strongest);
  });
});

describe('refining several samples on one support', () => {
  it('reaches each sample’s own optimum, though later samples start from the one before', () => {
    const data = support(4, 5, 31, 1.2);
    const base = randomHead(4, 32);
    // Samples near each other, as the generator's are at temperature 0.25.
    const samples = [0, 1, 2].map((s) => {
      const noise = randomHead(4, 40 + s, 0.3);
      return {
        ...base,
        weight: base.weight.map((w, k) => w + noise.weight[k]!),
        bias: base.bias.map((b, k) => b + noise.bias[k]!),
      };
    });
    const spec = { ...DEFAULT_SPEC, solver_tol: 1e-12, lambda_by_shots: { '1': 0.01 } };
    const { heads, choice } = refineHeads(samples, data, 4, { ...spec, cv_min_images: 99 });
    expect(choice).toEqual({ lambda: 0.01, rule: 'calibrated', minImages: 5 });
    heads.forEach((head, s) => {
      const alone = refineHead(samples[s]!, data, { lambda: 0.01, tolerance: 1e-9 }).head;
      expect(relativeError(head.weight, Array.from(alone.weight)), `sample ${s}`).toBeLessThan(
        1e-5,
      );
      expect(fullGradient(head, samples[s]!, data, 0.01), `sample ${s}`).toBeLessThan(1e-4);
    });
  });
});

describe("cross-validation with each fold's own prior (cv_prior fold_reference)", () => {
  /** A prior made from per-class rows: their means × 20 (a reference head stands in for it). */
  const meansHead = (perClass: readonly Float32Array[]): Head => {
    const weight = new Float32Array(perClass.length * DIM);
    perClass.forEach((x, c) => {
      const k = x.length / DIM;
      for (let i = 0; i < k; i++)
        for (let j = 0; j < DIM; j++) weight[c * DIM + j]! += (20 * x[i * DIM + j]!) / k;
    });
    return { classes: perClass.length, dim: DIM, weight, bias: new Float32Array(perClass.length) };
  };
  const foldReference = { ...DEFAULT_SPEC, cv_prior: 'fold_reference' as const };

  it('gives the fold prior only the fold’s training images', () => {
    const data = support(3, 6, 21, 2);
    const seen: Float32Array[][] = [];
    chooseLambda([randomHead(3, 22)], data, 3, foldReference, (perClass) => {
      seen.push([...perClass]);
      return meansHead(perClass);
    });
    expect(seen).toHaveLength(3); // one prior per fold
    const rowsOf = (x: Float32Array) =>
      Array.from({ length: x.length / DIM }, (_, i) => x.subarray(i * DIM, (i + 1) * DIM).join());
    const all = Array.from({ length: 18 }, (_, i) =>
      data.features.subarray(i * DIM, (i + 1) * DIM).join(),
    );
    seen.forEach((perClass, fold) => {
      expect(perClass.map((x) => x.length / DIM)).toEqual([4, 4, 4]);
      // image i of each class is validation in fold i mod 3 (folds dealt in image order)
      const validation = new Set(all.filter((_, row) => (row % 6) % 3 === fold));
      for (const x of perClass)
        for (const row of rowsOf(x)) expect(validation.has(row)).toBe(false);
    });
  });

  it('stops a prior made from every support image from winning every fold', () => {
    // The generated heads saw the validation images: with them as the folds' prior, the strongest λ
    // wins on every support; priors from the folds' own training images leave it to the data.
    const strongest = Math.max(...LAMBDA_GRID);
    const leaky: number[] = [];
    const own: number[] = [];
    for (let s = 0; s < 8; s++) {
      const data = support(3, 6, 50 + s, 2);
      const memorised = meansHead(byClass(data, 3));
      leaky.push(chooseLambda([memorised], data, 3, DEFAULT_SPEC).lambda);
      own.push(chooseLambda([memorised], data, 3, foldReference, meansHead).lambda);
    }
    expect(leaky).toEqual(new Array(8).fill(strongest));
    expect(own.filter((l) => l < strongest).length).toBeGreaterThanOrEqual(2);
  });

  it('says so when the rule needs a fold prior and none was given', () => {
    expect(() => chooseLambda([randomHead(3, 23)], support(3, 6, 24), 3, foldReference)).toThrow(
      /fold prior/,
    );
  });
});

describe('refine parity with the factory (models/d2nwg/refine.py)', () => {
  it('refines a head on the trace’s support to the weights the factory recorded', () => {
    const read = (path: string) => JSON.parse(readFileSync(new URL(path, import.meta.url), 'utf8'));
    const trace = parse(
      headTraceSchema,
      read('../../models/release/head/trace.json'),
      'trace.json',
    );
    const fixture = read('../../models/fixtures/refine.json') as {
      lambda: number;
      weight: { shape: number[]; data: number[] };
      bias: { data: number[] };
    };
    const [classes, dim] = fixture.weight.shape as [number, number];
    const support = labelled(traceSupport(trace), dim);
    // The first generated head with its class rows rotated by one (refine.py, refine_fixture).
    const rows = (data: number[], width: number) =>
      Array.from({ length: classes }, (_, c) => {
        const from = (c + classes - 1) % classes;
        return data.slice(from * width, (from + 1) * width);
      }).flat();
    const prior: Head = {
      classes,
      dim,
      weight: Float32Array.from(rows(trace.weight.data.slice(0, classes * dim), dim)),
      bias: Float32Array.from(rows(trace.bias.data.slice(0, classes), 1)),
    };
    const { head } = refineHead(prior, support, { lambda: fixture.lambda });
    expect(relativeError(head.weight, fixture.weight.data)).toBeLessThan(1e-4);
    expect(relativeError(head.bias, fixture.bias.data)).toBeLessThan(1e-4);
    // and it really moved: the fixture is not the generated head
    expect(relativeError(prior.weight, fixture.weight.data)).toBeGreaterThan(1e-3);
  });
});
