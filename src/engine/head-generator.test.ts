import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { maxAbsDifference } from './compare';
import { GeneratorRegistry } from './generators';
import { HeadGenerator } from './head-generator';
import { directorySource, nodeHost } from './node-host';
import { GenerationCancelled, type Progress } from './progress';
import { Mulberry32 } from './rng';
import type { GeneratedWeights } from './sampling';
import { checkGenerator, headTraceSchema, relativeError, traceSupport } from './generator-check';
import { parse } from './schema';

const headDir = fileURLToPath(new URL('../../models/release/head/', import.meta.url));
// One registry for the file: the sessions are opened once.
const registry = new GeneratorRegistry(nodeHost, () => directorySource(headDir));
afterAll(() => registry.releaseAll());

async function setUp() {
  const generator = (await registry.open('head', { backend: 'cpu' })) as HeadGenerator;
  const manifest = generator.manifest;
  const trace = parse(
    headTraceSchema,
    JSON.parse(await readFile(`${headDir}/${manifest.trace.file}`, 'utf8')),
    'trace.json',
  );
  const support = traceSupport(trace);
  return { manifest, trace, generator, support };
}

/** Every sample's weight rows, one after the other: [S, C, F]. */
function weights(result: GeneratedWeights): Float32Array {
  return Float32Array.from(result.networks.flatMap((n) => Array.from(n.weight!.data)));
}

function biases(result: GeneratedWeights): Float32Array {
  return Float32Array.from(result.networks.flatMap((n) => Array.from(n.bias!.data)));
}

describe('head generator on onnxruntime-node, replaying the factory trace', () => {
  it('builds the reference head and the conditions, and encodes them, like PyTorch', async () => {
    const { manifest, trace, generator, support } = await setUp();
    const tolerance = manifest.trace.max_abs_error;
    const built = generator.support(support);
    // The reference head's rows are ~300 × a unit vector: compare relative to their scale.
    expect(relativeError(built.weight, trace.reference_weight.data)).toBeLessThanOrEqual(tolerance);
    expect(relativeError(built.bias, trace.reference_bias.data)).toBeLessThanOrEqual(tolerance);
    expect(relativeError(built.imageFeatures, trace.image_features.data)).toBeLessThanOrEqual(
      tolerance,
    );
    expect(relativeError(built.classFeatures, trace.class_features.data)).toBeLessThanOrEqual(
      tolerance,
    );
    const condition = await generator.conditionOf(built);
    expect(maxAbsDifference(Array.from(condition), trace.condition.data)).toBeLessThanOrEqual(
      tolerance * 10,
    );
  });

  it('generates the same heads as PyTorch for the same seed, step by step', async () => {
    const { manifest, trace, generator, support } = await setUp();
    const progress: Progress[] = [];
    const heads = await generator.generate(support, trace.settings, {
      onProgress: (p) => progress.push(p),
    });
    const tolerance = manifest.trace.max_abs_error;
    expect(heads.networks).toHaveLength(trace.settings.samples);
    expect(weights(heads).length).toBe(trace.weight.data.length);
    expect(relativeError(weights(heads), trace.weight.data)).toBeLessThanOrEqual(tolerance);
    expect(relativeError(biases(heads), trace.bias.data)).toBeLessThanOrEqual(tolerance);
    expect(progress.filter((p) => p.stage === 'denoise').map((p) => p.done)).toEqual(
      Array.from({ length: trace.settings.steps }, (_, i) => i + 1),
    );
    const first = trace.steps[0]!;
    const condition = await generator.conditionOf(generator.support(support));
    const s = trace.settings.samples;
    const x = new Mulberry32(trace.settings.seed)
      .normals(s * support.length * manifest.latent_dim)
      .map((v) => v * trace.settings.temperature);
    const eps = await generator.eps(Float32Array.from(x), first.t, s, condition);
    expect(maxAbsDifference(Array.from(eps), first.eps)).toBeLessThanOrEqual(tolerance);
  });

  it('permuting the classes with their noise permutes the rows; a new seed gives other heads', async () => {
    const { generator, support } = await setUp();
    const options = { samples: 1, steps: 5, eta: 0, guidance: 1, seed: 3, temperature: 0 };
    const a = await generator.generate(support, options);
    const order = [2, 0, 1];
    // At temperature 0 the initial noise is zero, so it permutes trivially.
    const b = await generator.generate(
      order.map((i) => support[i]!),
      options,
    );
    const dim = generator.featureDim;
    order.forEach((from, to) => {
      expect(
        relativeError(
          weights(b).subarray(to * dim, (to + 1) * dim),
          Array.from(weights(a).subarray(from * dim, (from + 1) * dim)),
        ),
      ).toBeLessThan(1e-4);
    });
    const c = await generator.generate(support, { ...options, temperature: 1, seed: 4 });
    const d = await generator.generate(support, { ...options, temperature: 1, seed: 5 });
    expect(maxAbsDifference(Array.from(weights(c)), Array.from(weights(d)))).toBeGreaterThan(1e-3);
  });

  it('stops at the next step when cancelled, and refuses one class and guidance', async () => {
    const { generator, support } = await setUp();
    const controller = new AbortController();
    const run = generator.generate(
      support,
      { steps: 20 },
      {
        signal: controller.signal,
        onProgress: (p) => {
          if (p.stage === 'denoise' && p.done === 2) controller.abort();
        },
      },
    );
    await expect(run).rejects.toBeInstanceOf(GenerationCancelled);
    await expect(generator.generate(support.slice(0, 1))).rejects.toThrow(/at least 2 classes/);
    await expect(generator.generate(support, { guidance: 2 })).rejects.toThrow(
      /no unconditional mode/,
    );
  });

  it('passes its own trace check on the cpu backend', async () => {
    const result = await checkGenerator('head', registry, 'cpu');
    expect(result).toMatchObject({ family: 'head', backend: 'cpu', passed: true });
    expect(result.maxError).toBeLessThanOrEqual(result.tolerance);
  });

  it('says which precisions the release ships when asked for another', async () => {
    await expect(registry.open('head', { backend: 'cpu', precision: 'int8' })).rejects.toThrow(
      /no int8 .* it ships fp32/,
    );
    const fallback = await registry.open('head', {
      backend: 'cpu',
      precision: 'int8',
      orFp32: true,
    });
    expect(fallback.precision).toBe('fp32');
  });
});
