import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { maxAbsDifference } from './compare';
import { GeneratorRegistry } from './generators';
import { HeadGenerator, supportBasis } from './head-generator';
import { directorySource, nodeHost } from './node-host';
import { GenerationCancelled, type Progress } from './progress';
import { Mulberry32 } from './rng';
import type { GeneratedWeights, Precision } from './sampling';
import { checkGenerator, headTraceSchema, relativeError, traceSupport } from './generator-check';
import { parse } from './schema';

const headDir = fileURLToPath(new URL('../../models/release/head/', import.meta.url));
// One registry for the file: each precision's sessions are opened once.
const registry = new GeneratorRegistry(nodeHost, () => directorySource(headDir));
afterAll(() => registry.releaseAll());

async function setUp(precision: Precision = 'fp32') {
  const generator = (await registry.open('head', { backend: 'cpu', precision })) as HeadGenerator;
  const files = { manifest: generator.manifest };
  const trace = parse(
    headTraceSchema,
    JSON.parse(await readFile(`${headDir}/${files.manifest.trace.file}`, 'utf8')),
    'trace.json',
  );
  const support = traceSupport(trace);
  return { files, trace, generator, support };
}

/** Every sample's weight rows, one after the other: [S, C, F]. */
function weights(result: GeneratedWeights): Float32Array {
  return Float32Array.from(result.networks.flatMap((n) => Array.from(n.weight!.data)));
}

function biases(result: GeneratedWeights): Float32Array {
  return Float32Array.from(result.networks.flatMap((n) => Array.from(n.bias!.data)));
}

describe('head generator on onnxruntime-node, replaying the factory trace', () => {
  it('encodes the support like PyTorch', async () => {
    const { files, trace, generator, support } = await setUp();
    {
      const { classTokens, datasetToken } = await generator.condition(support);
      const tolerance = files.manifest.trace.max_abs_error;
      expect(
        maxAbsDifference(Array.from(classTokens), trace.class_tokens.data),
      ).toBeLessThanOrEqual(tolerance);
      expect(
        maxAbsDifference(Array.from(datasetToken), trace.dataset_token.data),
      ).toBeLessThanOrEqual(tolerance);
      expect(
        maxAbsDifference(Array.from(supportBasis(support, generator.featureDim)), trace.basis.data),
      ).toBeLessThanOrEqual(1e-6);
    }
  });

  it('generates the same heads as PyTorch for the same seed, step by step', async () => {
    const { files, trace, generator, support } = await setUp();
    {
      const progress: Progress[] = [];
      const heads = await generator.generate(support, trace.settings, {
        onProgress: (p) => progress.push(p),
      });
      const tolerance = files.manifest.trace.max_abs_error;
      expect(heads.networks).toHaveLength(trace.settings.samples);
      expect(weights(heads).length).toBe(trace.weight.data.length);
      // Weights are ~100× the latents in size; compare relative to their scale.
      const scale = Math.max(...trace.weight.data.map(Math.abs));
      expect(
        maxAbsDifference(Array.from(weights(heads)), trace.weight.data) / scale,
      ).toBeLessThanOrEqual(tolerance);
      expect(maxAbsDifference(Array.from(biases(heads)), trace.bias.data)).toBeLessThanOrEqual(
        tolerance * 10,
      );
      expect(progress.filter((p) => p.stage === 'denoise').map((p) => p.done)).toEqual(
        Array.from({ length: trace.settings.steps }, (_, i) => i + 1),
      );
      const first = trace.steps[0]!;
      const { classTokens, datasetToken } = await generator.condition(support);
      const s = trace.settings.samples;
      const classes = support.length;
      const x = new Float32Array(2 * s * classes * files.manifest.latent_dim);
      const noise = new Mulberry32(trace.settings.seed).normals(x.length / 2);
      noise.forEach((v, i) => (x[i] = x[i + noise.length] = v * trace.settings.temperature));
      const eps = await generator.eps(x, first.t, 2 * s, s, classes, classTokens, datasetToken);
      expect(
        maxAbsDifference(Array.from(eps.subarray(0, noise.length)), first.eps_conditional),
      ).toBeLessThanOrEqual(tolerance);
      expect(
        maxAbsDifference(Array.from(eps.subarray(noise.length)), first.eps_unconditional),
      ).toBeLessThanOrEqual(tolerance);
    }
  });

  it('permuting the classes with their noise permutes the rows; a new seed gives other heads', async () => {
    const { generator, support } = await setUp();
    {
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
          maxAbsDifference(
            Array.from(weights(b).subarray(to * dim, (to + 1) * dim)),
            Array.from(weights(a).subarray(from * dim, (from + 1) * dim)),
          ),
        ).toBeLessThan(1e-3);
      });
      const c = await generator.generate(support, { ...options, temperature: 1, seed: 4 });
      const d = await generator.generate(support, { ...options, temperature: 1, seed: 5 });
      expect(maxAbsDifference(Array.from(weights(c)), Array.from(weights(d)))).toBeGreaterThan(
        1e-3,
      );
    }
  });

  it('stops at the next step when cancelled, and refuses one class', async () => {
    const { generator, support } = await setUp();
    {
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
    }
  });

  it('passes its own trace check on the cpu backend', async () => {
    const result = await checkGenerator('head', registry, 'cpu');
    expect(result).toMatchObject({ family: 'head', backend: 'cpu', passed: true });
    expect(result.maxError).toBeLessThanOrEqual(result.tolerance);
  });

  it('loads the shipped int8 and fp16 variants, which generate nearly the fp32 heads', async () => {
    const { trace, support } = await setUp();
    for (const precision of ['fp16', 'int8'] as const) {
      const { generator } = await setUp(precision);
      expect(generator.precision).toBe(precision);
      const manifest = generator.manifest;
      expect(manifest.variants[precision]!.decoder!.bytes).toBeLessThan(
        manifest.graphs.decoder.bytes * 0.6,
      );
      const heads = await generator.generate(support, trace.settings);
      const error = relativeError(weights(heads), trace.weight.data);
      expect(error, precision).toBeGreaterThan(0); // really other weights
      expect(error, precision).toBeLessThan(precision === 'fp16' ? 1e-2 : 5e-2);
    }
  });
});
