import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { maxAbsDifference } from './compare';
import type { CnnGenerator, CnnWeights } from './cnn-generator';
import { runCnn } from './evaluation';
import { GeneratorRegistry } from './generators';
import { directorySource, nodeHost } from './node-host';
import { cnnToOnnx } from './onnx-writer';
import { GenerationCancelled, type Progress } from './progress';
import { Mulberry32 } from './rng';
import { checkGenerator, cnnTraceSchema, traceSupport } from './generator-check';
import { parse } from './schema';

const cnnDir = fileURLToPath(new URL('../../models/release/cnn/', import.meta.url));

const registry = new GeneratorRegistry(nodeHost, () => directorySource(cnnDir));
afterAll(() => registry.releaseAll());

async function setUp() {
  const generator = (await registry.open('cnn', { backend: 'cpu' })) as CnnGenerator;
  const files = { manifest: generator.manifest };
  const trace = parse(
    cnnTraceSchema,
    JSON.parse(await readFile(`${cnnDir}/${files.manifest.trace.file}`, 'utf8')),
    'trace.json',
  );
  const support = traceSupport(trace);
  return { files, trace, generator, support };
}

describe('cnn generator on onnxruntime-node, replaying the factory trace', () => {
  it('encodes the support and predicts the first denoising step like PyTorch', async () => {
    const { files, trace, generator, support } = await setUp();
    {
      const tolerance = files.manifest.trace.max_abs_error;
      const { classTokens, datasetToken } = await generator.condition(support);
      expect(
        maxAbsDifference(Array.from(classTokens), trace.class_tokens.data),
      ).toBeLessThanOrEqual(tolerance);
      expect(
        maxAbsDifference(Array.from(datasetToken), trace.dataset_token.data),
      ).toBeLessThanOrEqual(tolerance);
      const s = trace.settings.samples;
      const size = trace.initial_noise_shape.reduce((a, b) => a * b, 1);
      const x = new Float32Array(2 * size);
      const noise = new Mulberry32(trace.settings.seed).normals(size);
      noise.forEach((v, i) => (x[i] = x[i + size] = v * trace.settings.temperature));
      const first = trace.steps[0]!;
      const eps = await generator.eps(trace.arch, x, first.t, 2 * s, s, classTokens, datasetToken);
      expect(
        maxAbsDifference(Array.from(eps.subarray(0, size)), first.eps_conditional),
      ).toBeLessThanOrEqual(tolerance);
      expect(
        maxAbsDifference(Array.from(eps.subarray(size)), first.eps_unconditional),
      ).toBeLessThanOrEqual(tolerance);
    }
  });

  it('generates the same CNN weights as PyTorch for the same seed', async () => {
    const { files, trace, generator, support } = await setUp();
    {
      const progress: Progress[] = [];
      const result = await generator.generate(
        support,
        { ...trace.settings, arch: trace.arch },
        {
          onProgress: (p) => progress.push(p),
        },
      );
      expect(result.networks).toHaveLength(trace.settings.samples);
      const tolerance = files.manifest.trace.max_abs_error;
      result.networks.forEach((net, s) => {
        const expected = trace.tensors[s]!;
        expect(Object.keys(net)).toEqual(Object.keys(expected));
        for (const [name, t] of Object.entries(expected)) {
          expect(net[name]!.shape).toEqual(t.shape);
          const scale = Math.max(1, ...t.data.map(Math.abs));
          expect(maxAbsDifference(Array.from(net[name]!.data), t.data) / scale).toBeLessThanOrEqual(
            tolerance * 10,
          );
        }
      });
      expect(progress.filter((p) => p.stage === 'denoise')).toHaveLength(trace.settings.steps);
    }
  });

  it('writes an ONNX CNN that computes what the factory-exported one does', async () => {
    const { files, trace, generator } = await setUp();
    {
      const net: CnnWeights = {};
      for (const [name, t] of Object.entries(trace.tensors[0]!))
        net[name] = { shape: t.shape, data: Float32Array.from(t.data) };
      const ours = cnnToOnnx(generator.layout(trace.arch), net, 'test');
      const theirs = await readFile(`${cnnDir}/${files.manifest.trace.sample_graph.file}`);
      const images = Float32Array.from(
        new Mulberry32(9).normals(4 * 28 * 28),
        (v) => Math.abs(v) / 3,
      );
      const a = await runCnn(nodeHost, ours, images, 4);
      const b = await runCnn(nodeHost, new Uint8Array(theirs), images, 4);
      expect(a).toHaveLength(4 * trace.class_tokens.shape[0]!);
      expect(maxAbsDifference(Array.from(a), Array.from(b))).toBeLessThanOrEqual(1e-4);
    }
  });

  it('passes its own trace check on the cpu backend', async () => {
    const result = await checkGenerator('cnn', registry, 'cpu');
    expect(result).toMatchObject({ family: 'cnn', backend: 'cpu', passed: true });
    expect(result.maxError).toBeLessThanOrEqual(result.tolerance);
  });

  it('says which architectures exist, and stops when cancelled', async () => {
    const { generator, support } = await setUp();
    {
      expect(generator.archs).toEqual(['cnn-s', 'cnn-w']);
      expect(generator.resolveArch(undefined)).toBe(generator.manifest.default_arch);
      await expect(generator.generate(support, { arch: 'cnn-x' })).rejects.toThrow(
        /unknown CNN architecture "cnn-x"/,
      );
      const controller = new AbortController();
      const run = generator.generate(
        support,
        { arch: 'cnn-w', samples: 1, steps: 20 },
        {
          signal: controller.signal,
          onProgress: (p) => {
            if (p.stage === 'denoise' && p.done === 2) controller.abort();
          },
        },
      );
      await expect(run).rejects.toBeInstanceOf(GenerationCancelled);
    }
  });
});
