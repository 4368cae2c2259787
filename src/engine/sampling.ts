// What both generator families share: manifest pieces, sampling options,
// progress and cancellation, and the guided DDIM loop over flat latents.

import type { InferenceSession, Tensor } from 'onnxruntime-common';
import { BETA_SCHEDULES, DdimScheduler, type NoiseScheduleConfig } from './ddim';
import { Mulberry32 } from './rng';
import { readJson, readVerified, type FileSource } from './files';
import { unitNormalise } from './heads';
import type { SelectedBackend } from './runtime';
import type { NamedTensor } from './safetensors';
import { throwIfCancelled, timedStage, yieldToEventLoop, type Control } from './progress';
import {
  array,
  integer,
  literal,
  number,
  object,
  parse,
  record,
  string,
  type Schema,
} from './schema';

export const graphSchema = object({
  file: string,
  sha256: string,
  bytes: integer,
  inputs: record(array(string)),
  outputs: record(array(string)),
});

/** Reduced-precision copies of the graphs (models/d2nwg/quantize.py): precision → graph → file. */
export const variantsSchema = record(
  record(object({ file: string, sha256: string, bytes: integer })),
);

export const PRECISIONS = ['fp32', 'fp16', 'int8'] as const;
export type Precision = (typeof PRECISIONS)[number];

/** The file entry of `graph` at `precision`: the manifest's own for fp32, else a shipped variant. */
export function graphEntry(
  manifest: {
    graphs: Record<string, { file: string; sha256: string; bytes: number }>;
    variants: Record<string, Record<string, { file: string; sha256: string; bytes: number }>>;
  },
  graph: string,
  precision: Precision,
): { file: string; sha256: string; bytes: number } {
  const entry =
    precision === 'fp32' ? manifest.graphs[graph] : manifest.variants[precision]?.[graph];
  if (entry === undefined) {
    const shipped = ['fp32', ...Object.keys(manifest.variants)].join(', ');
    throw new Error(`this release has no ${precision} ${graph} graph; it ships ${shipped}`);
  }
  return entry;
}

type GraphFile = { file: string; sha256: string; bytes: number };
type GeneratorManifest = {
  graphs: Record<'encoder' | 'denoiser' | 'decoder', GraphFile>;
  variants: Record<string, Record<string, GraphFile>>;
};

/**
 * A family's manifest (parsed with its schema) and its three graphs at `precision`, hashes
 * checked. With `orFp32`, a precision the release does not ship falls back to fp32; `precision`
 * in the result says which graphs were loaded.
 */
export async function loadGeneratorFiles<M extends GeneratorManifest>(
  source: FileSource,
  schema: Schema<M>,
  precision: Precision,
  { orFp32 = false }: { orFp32?: boolean } = {},
): Promise<GeneratorFiles<M>> {
  const manifest = parse(schema, await readJson(source, 'manifest.json'), 'manifest.json');
  const used = orFp32 && manifest.variants[precision] === undefined ? 'fp32' : precision;
  const [encoder, denoiser, decoder] = await Promise.all(
    (['encoder', 'denoiser', 'decoder'] as const).map((name) => {
      const entry = graphEntry(manifest, name, used);
      return readVerified(source, entry.file, entry);
    }),
  );
  return { manifest, precision: used, encoder: encoder!, denoiser: denoiser!, decoder: decoder! };
}

export const scheduleSchema = object({
  train_steps: integer,
  beta_schedule: literal(...BETA_SCHEDULES),
  beta_start: number,
  beta_end: number,
});

export const samplingDefaultsSchema = object({
  samples: integer,
  steps: integer,
  eta: number,
  guidance: number,
  seed: integer,
  temperature: number,
});

/** The manifest keys both families share (models/d2nwg/export_*.py write them); each family adds its own. */
export const generatorManifestShape = {
  release_version: string,
  graphs: object({ encoder: graphSchema, denoiser: graphSchema, decoder: graphSchema }),
  backbone: object({ id: string, feature_dim: integer, features: literal('unit-norm') }),
  schedule: scheduleSchema,
  sampling_defaults: samplingDefaultsSchema,
  latent_dim: integer,
  latent_scale: number,
  noise: string,
  max_classes: integer,
  checkpoint: record(string),
  rebuild_command: string,
  torch_version: string,
  variants: variantsSchema,
};

/** A family's manifest, its three graphs at a precision (verified), and that precision. */
export interface GeneratorFiles<M> {
  manifest: M;
  /** The precision of the graphs below. */
  precision: Precision;
  encoder: Uint8Array;
  denoiser: Uint8Array;
  decoder: Uint8Array;
}

export interface SamplingOptions {
  samples: number;
  steps: number;
  eta: number;
  guidance: number;
  seed: number;
  temperature: number;
}

export const FAMILIES = ['head', 'cnn'] as const;
export type Family = (typeof FAMILIES)[number];

/** One generated network: its tensors by PyTorch name, in layout order. */
export type NetworkWeights = Record<string, NamedTensor>;

/** What every family's `generate` returns. */
export interface GeneratedWeights {
  family: Family;
  arch: string;
  classes: number;
  /** The settings that ran: the manifest's defaults with the caller's overrides. */
  options: SamplingOptions;
  networks: NetworkWeights[];
  /** head: the latents the decoder turned into the networks, [samples × rows × dim]. */
  latents?: { data: Float32Array; dim: number };
  timingsMs: { encode: number; denoise: number; decode: number };
}

/** Sampling settings plus, for families with several architectures, which one. */
export type GenerateOptions = Partial<SamplingOptions> & { arch?: string };

/** The manifest's defaults with the caller's settings; rejects settings no run can use. */
export function samplingOptions(
  defaults: SamplingOptions,
  options: Partial<SamplingOptions>,
): SamplingOptions {
  const o: SamplingOptions = { ...defaults };
  for (const key of Object.keys(defaults) as (keyof SamplingOptions)[])
    if (options[key] !== undefined) o[key] = options[key];
  if (!Number.isInteger(o.samples) || o.samples < 1)
    throw new Error(`samples must be a positive integer, got ${o.samples}`);
  if (!Number.isInteger(o.steps) || o.steps < 1)
    throw new Error(`steps must be a positive integer, got ${o.steps}`);
  if (!Number.isInteger(o.seed) || o.seed < 0)
    throw new Error(`seed must be a non-negative integer, got ${o.seed}`);
  for (const key of ['eta', 'guidance', 'temperature'] as const)
    if (!Number.isFinite(o[key]) || o[key] < 0)
      throw new Error(`${key} must be a non-negative number, got ${o[key]}`);
  return o;
}

/** Per-class features a generator can take: 2…max classes, each a positive multiple of `dim` values. */
export function checkSupport(
  support: readonly Float32Array[],
  dim: number,
  maxClasses: number,
  what: string,
): void {
  const classes = support.length;
  if (classes < 2) throw new Error(`a classifier needs at least 2 classes, got ${classes}`);
  if (classes > maxClasses)
    throw new Error(
      `this release generates ${what} of up to ${maxClasses} classes, got ${classes}`,
    );
  support.forEach((s, c) => {
    if (s.length === 0 || s.length % dim !== 0)
      throw new Error(
        `class ${c} has ${s.length} feature values; expected a positive multiple of ${dim}`,
      );
  });
}

export function graphOutput(
  outputs: InferenceSession.OnnxValueMapType,
  name: string,
): Float32Array {
  const value = outputs[name] as Tensor | undefined;
  if (value === undefined) throw new Error(`the graph has no output named ${name}`);
  return value.data as Float32Array;
}

/**
 * ε̂ for `rows` copies of x (flat, `rows × size`): the first `conditional` rows
 * conditioned, the rest not (rows = 2·conditional under guidance).
 */
export type EpsFunction = (
  x: Float32Array,
  t: number,
  rows: number,
  conditional: number,
) => Promise<Float32Array>;

/**
 * DDIM from x_T = Mulberry32(seed).normals(size)·temperature (size: all samples'
 * latents, row-major), with classifier-free guidance ε = ε_∅ + g (ε_c − ε_∅);
 * returns x_0 (still scaled by the latent scale).
 */
export async function sampleLatents(
  schedule: NoiseScheduleConfig,
  size: number,
  o: SamplingOptions,
  eps: EpsFunction,
  { signal, onProgress }: Control = {},
): Promise<Float64Array> {
  const scheduler = new DdimScheduler(schedule);
  scheduler.setTimesteps(o.steps);
  const rng = new Mulberry32(o.seed);
  let x = rng.normals(size);
  for (let i = 0; i < x.length; i++) x[i]! *= o.temperature;
  const guided = o.guidance !== 1;
  const rows = guided ? 2 * o.samples : o.samples;
  let done = 0;
  for (const t of scheduler.timesteps) {
    if (signal !== undefined) await yieldToEventLoop();
    throwIfCancelled(signal);
    const input = new Float32Array(guided ? 2 * size : size);
    input.set(Float32Array.from(x));
    if (guided) input.set(Float32Array.from(x), size);
    const raw = await eps(input, t, rows, o.samples);
    let e: ArrayLike<number> = raw;
    if (guided) {
      const mixed = new Float64Array(size);
      for (let i = 0; i < size; i++)
        mixed[i] = raw[size + i]! + o.guidance * (raw[i]! - raw[size + i]!);
      e = mixed;
    }
    x = scheduler.step(e, t, x, { eta: o.eta, rng }).prevSample;
    onProgress?.({ stage: 'denoise', done: ++done, total: o.steps });
  }
  return x;
}

export interface SamplingManifest {
  backbone: { feature_dim: number };
  schedule: NoiseScheduleConfig;
  latent_dim: number;
}

export class GeneratorSessions<M extends SamplingManifest> {
  protected constructor(
    readonly manifest: M,
    readonly backend: SelectedBackend,
    /** The precision of the opened graphs. */
    readonly precision: Precision,
    protected readonly encoder: InferenceSession,
    protected readonly denoiser: InferenceSession,
    protected readonly decoder: InferenceSession,
  ) {}

  /** Opens the three graphs on `backend`; the family's constructor gets them. */
  protected static async open<M extends SamplingManifest>(
    files: GeneratorFiles<M>,
    backend: SelectedBackend,
    /** The decoder's session when the backend choice already opened it. */
    decoderSession?: InferenceSession,
  ) {
    // One at a time: onnxruntime-web fails ("Session already started") on concurrent creation.
    const encoder = await backend.createSession(files.encoder);
    const denoiser = await backend.createSession(files.denoiser);
    const decoder = decoderSession ?? (await backend.createSession(files.decoder));
    return [files.manifest, backend, files.precision, encoder, denoiser, decoder] as const;
  }

  /**
   * The stages both families share: encode the support → DDIM over `tokens`
   * latent tokens per sample, each step one call of the family's `eps` → x_0
   * (still scaled by the latent scale), with each stage's milliseconds.
   */
  protected async sampleLatents(
    support: readonly Float32Array[],
    o: SamplingOptions,
    tokens: number,
    eps: (
      x: Float32Array,
      t: number,
      rows: number,
      conditional: number,
      classTokens: Float32Array,
      datasetToken: Float32Array,
    ) => Promise<Float32Array>,
    control: Control,
  ): Promise<{ x0: Float64Array; encodeMs: number; denoiseMs: number }> {
    const encoded = await timedStage('encode', control, () => this.condition(support));
    const { classTokens, datasetToken } = encoded.result;
    const denoised = await timedStage(
      'denoise',
      control,
      () =>
        sampleLatents(
          this.manifest.schedule,
          o.samples * tokens * this.manifest.latent_dim,
          o,
          (x, t, rows, conditional) => eps(x, t, rows, conditional, classTokens, datasetToken),
          control,
        ),
      { reportUnits: false },
    );
    return { x0: denoised.result, encodeMs: encoded.ms, denoiseMs: denoised.ms };
  }

  async release(): Promise<void> {
    await Promise.all([this.encoder.release(), this.denoiser.release(), this.decoder.release()]);
  }

  /** Class tokens [C, d] and the dataset token [d] for per-class features (each [K_c, F], any K_c ≥ 1). */
  async condition(
    support: readonly Float32Array[],
  ): Promise<{ classTokens: Float32Array; datasetToken: Float32Array }> {
    const dim = this.manifest.backbone.feature_dim;
    const images = Math.max(...support.map((s) => s.length / dim));
    const features = new Float32Array(support.length * images * dim);
    const mask = new Float32Array(support.length * images);
    support.forEach((s, c) => {
      features.set(unitNormalise(s, dim), c * images * dim);
      mask.fill(1, c * images, c * images + s.length / dim);
    });
    const outputs = await this.encoder.run({
      features: this.float(features, [support.length, images, dim]),
      image_mask: this.float(mask, [support.length, images]),
    });
    return {
      classTokens: graphOutput(outputs, 'class_tokens'),
      datasetToken: graphOutput(outputs, 'dataset_token'),
    };
  }

  protected float(data: Float32Array, dims: number[]): Tensor {
    return new this.backend.host.ort.Tensor('float32', data, dims);
  }

  protected int64(ids: number[], dims: number[]): Tensor {
    return new this.backend.host.ort.Tensor(
      'int64',
      BigInt64Array.from(ids.map((i) => BigInt(i))),
      dims,
    );
  }
}
