// Replaying a family's factory trace through the engine on a chosen backend:
// the same support, settings and seed must give the weights PyTorch recorded.
// The Node tests, the page's "generator check" and the e2e suite all use it.

import { CnnGenerator, loadCnnGeneratorFiles } from './cnn-generator';
import { readJson, type FileSource } from './files';
import { HeadGenerator, loadHeadGeneratorFiles } from './head-generator';
import {
  selectBackend,
  type Backend,
  type BackendAttempt,
  type BackendRequest,
  type RuntimeHost,
} from './runtime';
import { array, integer, number, object, parse, record, string } from './schema';

export type Family = 'head' | 'cnn';

const tensor = object({ shape: array(integer), data: array(number) });
const settings = object({
  samples: integer,
  steps: integer,
  eta: number,
  guidance: number,
  seed: integer,
  temperature: number,
});
const step = object({
  t: integer,
  eps_conditional: array(number),
  eps_unconditional: array(number),
  prev_sample: array(number),
});

export const headTraceSchema = object({
  settings,
  features: tensor,
  image_mask: tensor,
  class_tokens: tensor,
  dataset_token: tensor,
  initial_noise_shape: array(integer),
  basis: tensor,
  steps: array(step),
  weight: tensor,
  bias: tensor,
});
export type HeadTrace = ReturnType<typeof headTraceSchema>;

export const cnnTraceSchema = object({
  arch: string,
  settings,
  features: tensor,
  image_mask: tensor,
  class_tokens: tensor,
  dataset_token: tensor,
  initial_noise_shape: array(integer),
  steps: array(step),
  tensors: array(record(tensor)),
});
export type CnnTrace = ReturnType<typeof cnnTraceSchema>;

/** The trace's support: per class, the rows of the packed [C, K, F] features its mask marks real. */
export function traceSupport(trace: Pick<HeadTrace, 'features' | 'image_mask'>): Float32Array[] {
  const [classes, images, dim] = trace.features.shape as [number, number, number];
  return Array.from({ length: classes }, (_, c) => {
    const rows = trace.image_mask.data
      .slice(c * images, (c + 1) * images)
      .filter((m) => m > 0).length;
    return Float32Array.from(
      trace.features.data.slice(c * images * dim, (c * images + rows) * dim),
    );
  });
}

/** Largest |a − b| over the tensor, divided by max(1, largest |b|): weights of any scale compare alike. */
export function relativeError(actual: ArrayLike<number>, expected: readonly number[]): number {
  if (actual.length !== expected.length)
    throw new Error(`expected ${expected.length} values, got ${actual.length}`);
  let diff = 0;
  let scale = 1;
  for (let i = 0; i < expected.length; i++) {
    diff = Math.max(diff, Math.abs(actual[i]! - expected[i]!));
    scale = Math.max(scale, Math.abs(expected[i]!));
  }
  return diff / scale;
}

export interface GeneratorCheckResult {
  family: Family;
  backend: Backend;
  skipped: readonly BackendAttempt[];
  /** Largest relative error over the generated tensors (relativeError). */
  maxError: number;
  tolerance: number;
  passed: boolean;
  generateMs: number;
}

export async function checkGenerator(
  family: Family,
  source: FileSource,
  request: BackendRequest,
  host: RuntimeHost,
): Promise<GeneratorCheckResult> {
  const files =
    family === 'head' ? await loadHeadGeneratorFiles(source) : await loadCnnGeneratorFiles(source);
  const { selected, probeSession } = await selectBackend(request, host, files.decoder);
  await probeSession.release();
  const tolerance = files.manifest.trace.max_abs_error * 10;
  const started = performance.now();
  let maxError = 0;
  if (files.manifest.family === 'head') {
    const trace = parse(
      headTraceSchema,
      await readJson(source, files.manifest.trace.file),
      'trace.json',
    );
    const generator = await HeadGenerator.create({ ...files, manifest: files.manifest }, selected);
    try {
      const heads = await generator.generate(traceSupport(trace), trace.settings);
      maxError = Math.max(
        relativeError(heads.weight, trace.weight.data),
        relativeError(heads.bias, trace.bias.data),
      );
    } finally {
      await generator.release();
    }
  } else {
    const trace = parse(
      cnnTraceSchema,
      await readJson(source, files.manifest.trace.file),
      'trace.json',
    );
    const generator = await CnnGenerator.create({ ...files, manifest: files.manifest }, selected);
    try {
      const result = await generator.generate(trace.arch, traceSupport(trace), trace.settings);
      result.networks.forEach((net, s) => {
        for (const [name, t] of Object.entries(trace.tensors[s]!))
          maxError = Math.max(maxError, relativeError(net[name]?.data ?? [], t.data));
      });
    } finally {
      await generator.release();
    }
  }
  return {
    family,
    backend: selected.backend,
    skipped: selected.skipped,
    maxError,
    tolerance,
    passed: maxError <= tolerance,
    generateMs: performance.now() - started,
  };
}
