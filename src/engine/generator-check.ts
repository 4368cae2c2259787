// Replaying a family's factory trace through the engine on a chosen backend:
// the same support, settings and seed must give the weights PyTorch recorded.
// The Node tests, the page's "generator check" and the e2e suite all use it.

import { readJson } from './files';
import { readGeneratorManifest, type GeneratorRegistry } from './generators';
import { generateWeights } from './pipeline';
import type { Control } from './progress';
import type { Backend, BackendAttempt, BackendRequest } from './runtime';
import { samplingDefaultsSchema, type Family } from './sampling';
import { array, integer, number, object, parse, record, string } from './schema';

const tensor = object({ shape: array(integer), data: array(number) });
const settings = samplingDefaultsSchema;
const step = object({
  t: integer,
  eps_conditional: array(number),
  eps_unconditional: array(number),
  prev_sample: array(number),
});

/** What both families' traces record: the support and the initial noise's shape. */
const traceShape = {
  settings,
  features: tensor,
  image_mask: tensor,
  initial_noise_shape: array(integer),
};

/**
 * The head family's trace (models/d2nwg/export_head.py): the support's reference head and
 * conditions, the encoder's condition, each unguided DDIM step and the decoded heads.
 */
export const headTraceSchema = object({
  ...traceShape,
  reference_weight: tensor,
  reference_bias: tensor,
  image_features: tensor,
  class_features: tensor,
  condition: tensor,
  steps: array(object({ t: integer, eps: array(number), prev_sample: array(number) })),
  weight: tensor,
  bias: tensor,
});
export type HeadTrace = ReturnType<typeof headTraceSchema>;

export const cnnTraceSchema = object({
  ...traceShape,
  class_tokens: tensor,
  dataset_token: tensor,
  steps: array(step),
  arch: string,
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

/** The trace's expected networks, by PyTorch name (heads: one weight and bias per sample). */
function expectedNetworks(trace: HeadTrace | CnnTrace): Record<string, { data: number[] }>[] {
  if ('tensors' in trace) return trace.tensors;
  const [samples, classes, dim] = trace.weight.shape as [number, number, number];
  return Array.from({ length: samples }, (_, s) => ({
    weight: { data: trace.weight.data.slice(s * classes * dim, (s + 1) * classes * dim) },
    bias: { data: trace.bias.data.slice(s * classes, (s + 1) * classes) },
  }));
}

/** Replays the family's trace through `generateWeights` on the backend `request` asks for (fp32 graphs). */
export async function checkGenerator(
  family: Family,
  generators: GeneratorRegistry,
  request: BackendRequest,
  control: Control = {},
): Promise<GeneratorCheckResult> {
  const source = generators.source(family);
  const manifest = await readGeneratorManifest(family, source);
  const json = await readJson(source, manifest.trace.file);
  const trace =
    family === 'head'
      ? parse(headTraceSchema, json, 'trace.json')
      : parse(cnnTraceSchema, json, 'trace.json');
  const tolerance = manifest.trace.max_abs_error * 10;
  const started = performance.now();
  const result = await generateWeights(
    {
      family,
      ...('arch' in trace ? { arch: trace.arch } : {}),
      precision: 'fp32',
      backend: request,
      options: trace.settings,
      data: {
        features: traceSupport(trace).map((features, c) => ({ name: `class ${c}`, features })),
      },
      onnx: false,
      // The trace holds the generator's own heads, before any refine toward the support.
      refine: false,
    },
    { generators },
    control,
  );
  let maxError = 0;
  expectedNetworks(trace).forEach((expected, s) => {
    for (const [name, t] of Object.entries(expected))
      maxError = Math.max(maxError, relativeError(result.networks[s]?.[name]?.data ?? [], t.data));
  });
  return {
    family,
    backend: result.backend,
    skipped: result.skipped,
    maxError,
    tolerance,
    passed: maxError <= tolerance,
    generateMs: performance.now() - started,
  };
}
