import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { maxAbsDifference } from './compare';
import {
  GenerationCancelled,
  HeadGenerator,
  loadHeadGeneratorFiles,
  supportBasis,
  type GenerationProgress,
} from './head-generator';
import { directorySource, nodeHost } from './node-host';
import { Mulberry32 } from './rng';
import { selectBackend } from './runtime';
import { checkGenerator, headTraceSchema, relativeError, traceSupport } from './generator-check';
import { parse } from './schema';

const headDir = fileURLToPath(new URL('../../models/release/head/', import.meta.url));

async function setUp() {
  const files = await loadHeadGeneratorFiles(directorySource(headDir));
  const trace = parse(
    headTraceSchema,
    JSON.parse(await readFile(`${headDir}/${files.manifest.trace.file}`, 'utf8')),
    'trace.json',
  );
  const { selected, probeSession } = await selectBackend('cpu', nodeHost, files.decoder);
  await probeSession.release();
  const generator = await HeadGenerator.create(files, selected);
  const support = traceSupport(trace);
  return { files, trace, generator, support };
}

describe('head generator on onnxruntime-node, replaying the factory trace', () => {
  it('encodes the support like PyTorch', async () => {
    const { files, trace, generator, support } = await setUp();
    try {
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
    } finally {
      await generator.release();
    }
  });

  it('generates the same heads as PyTorch for the same seed, step by step', async () => {
    const { files, trace, generator, support } = await setUp();
    try {
      const progress: GenerationProgress[] = [];
      const heads = await generator.generate(support, trace.settings, {
        onProgress: (p) => progress.push(p),
      });
      const tolerance = files.manifest.trace.max_abs_error;
      expect(heads.weight.length).toBe(trace.weight.data.length);
      // Weights are ~100× the latents in size; compare relative to their scale.
      const scale = Math.max(...trace.weight.data.map(Math.abs));
      expect(
        maxAbsDifference(Array.from(heads.weight), trace.weight.data) / scale,
      ).toBeLessThanOrEqual(tolerance);
      expect(maxAbsDifference(Array.from(heads.bias), trace.bias.data)).toBeLessThanOrEqual(
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
    } finally {
      await generator.release();
    }
  });

  it('permuting the classes with their noise permutes the rows; a new seed gives other heads', async () => {
    const { generator, support } = await setUp();
    try {
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
            Array.from(b.weight.subarray(to * dim, (to + 1) * dim)),
            Array.from(a.weight.subarray(from * dim, (from + 1) * dim)),
          ),
        ).toBeLessThan(1e-3);
      });
      const c = await generator.generate(support, { ...options, temperature: 1, seed: 4 });
      const d = await generator.generate(support, { ...options, temperature: 1, seed: 5 });
      expect(maxAbsDifference(Array.from(c.weight), Array.from(d.weight))).toBeGreaterThan(1e-3);
    } finally {
      await generator.release();
    }
  });

  it('stops at the next step when cancelled, and refuses one class', async () => {
    const { generator, support } = await setUp();
    try {
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
    } finally {
      await generator.release();
    }
  });

  it('passes its own trace check on the cpu backend', async () => {
    const result = await checkGenerator('head', directorySource(headDir), 'cpu', nodeHost);
    expect(result).toMatchObject({ family: 'head', backend: 'cpu', passed: true });
    expect(result.maxError).toBeLessThanOrEqual(result.tolerance);
  });

  it('loads the shipped int8 and fp16 variants, which generate nearly the fp32 heads', async () => {
    const { trace, support } = await setUp();
    for (const precision of ['fp16', 'int8'] as const) {
      const files = await loadHeadGeneratorFiles(directorySource(headDir), precision);
      expect(files.decoder.length).toBeLessThan(files.manifest.graphs.decoder.bytes * 0.6);
      const { selected, probeSession } = await selectBackend('cpu', nodeHost, files.decoder);
      await probeSession.release();
      const generator = await HeadGenerator.create(files, selected);
      try {
        const heads = await generator.generate(support, trace.settings);
        const error = relativeError(heads.weight, trace.weight.data);
        expect(error, precision).toBeGreaterThan(0); // really other weights
        expect(error, precision).toBeLessThan(precision === 'fp16' ? 1e-2 : 5e-2);
      } finally {
        await generator.release();
      }
    }
  });
});
