import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { maxAbsDifference } from './compare';
import { CnnGenerator, loadCnnGeneratorFiles, type CnnWeights } from './cnn-generator';
import { cnnLogits } from '../node/onnx-cnn';
import { directorySource, nodeHost } from './node-host';
import { cnnToOnnx } from './onnx-writer';
import { Mulberry32 } from './rng';
import { selectBackend } from './runtime';
import { GenerationCancelled, type GenerationProgress } from './sampling';
import { checkGenerator, cnnTraceSchema, traceSupport } from './generator-check';
import { parse } from './schema';

const cnnDir = fileURLToPath(new URL('../../models/release/cnn/', import.meta.url));

async function setUp() {
  const files = await loadCnnGeneratorFiles(directorySource(cnnDir));
  const trace = parse(
    cnnTraceSchema,
    JSON.parse(await readFile(`${cnnDir}/${files.manifest.trace.file}`, 'utf8')),
    'trace.json',
  );
  const { selected, probeSession } = await selectBackend('cpu', nodeHost, files.decoder);
  await probeSession.release();
  const generator = await CnnGenerator.create(files, selected);
  const support = traceSupport(trace);
  return { files, trace, generator, support };
}

describe('cnn generator on onnxruntime-node, replaying the factory trace', () => {
  it('encodes the support and predicts the first denoising step like PyTorch', async () => {
    const { files, trace, generator, support } = await setUp();
    try {
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
    } finally {
      await generator.release();
    }
  });

  it('generates the same CNN weights as PyTorch for the same seed', async () => {
    const { files, trace, generator, support } = await setUp();
    try {
      const progress: GenerationProgress[] = [];
      const result = await generator.generate(trace.arch, support, trace.settings, {
        onProgress: (p) => progress.push(p),
      });
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
    } finally {
      await generator.release();
    }
  });

  it('writes an ONNX CNN that computes what the factory-exported one does', async () => {
    const { files, trace, generator } = await setUp();
    try {
      const net: CnnWeights = {};
      for (const [name, t] of Object.entries(trace.tensors[0]!))
        net[name] = { shape: t.shape, data: Float32Array.from(t.data) };
      const ours = cnnToOnnx(generator.layout(trace.arch), net, 'test');
      const theirs = await readFile(`${cnnDir}/${files.manifest.trace.sample_graph.file}`);
      const images = Float32Array.from(
        new Mulberry32(9).normals(4 * 28 * 28),
        (v) => Math.abs(v) / 3,
      );
      const a = await cnnLogits(ours, images, 4);
      const b = await cnnLogits(new Uint8Array(theirs), images, 4);
      expect(a).toHaveLength(4 * trace.class_tokens.shape[0]!);
      expect(maxAbsDifference(Array.from(a), Array.from(b))).toBeLessThanOrEqual(1e-4);
    } finally {
      await generator.release();
    }
  });

  it('passes its own trace check on the cpu backend', async () => {
    const result = await checkGenerator('cnn', directorySource(cnnDir), 'cpu', nodeHost);
    expect(result).toMatchObject({ family: 'cnn', backend: 'cpu', passed: true });
    expect(result.maxError).toBeLessThanOrEqual(result.tolerance);
  });

  it('says which architectures exist, and stops when cancelled', async () => {
    const { generator, support } = await setUp();
    try {
      expect(generator.archs).toEqual(['cnn-s', 'cnn-w']);
      await expect(generator.generate('cnn-x', support)).rejects.toThrow(
        /unknown CNN architecture "cnn-x"/,
      );
      const controller = new AbortController();
      const run = generator.generate(
        'cnn-w',
        support,
        { samples: 1, steps: 20 },
        {
          signal: controller.signal,
          onProgress: (p) => {
            if (p.stage === 'denoise' && p.done === 2) controller.abort();
          },
        },
      );
      await expect(run).rejects.toBeInstanceOf(GenerationCancelled);
    } finally {
      await generator.release();
    }
  });
});
