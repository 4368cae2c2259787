// Generating every weight of a small CNN from per-class backbone features,
// with the factory's three exported cnn graphs: dataset encoder → each
// token's condition (body chunks: the dataset token; class rows: their class
// token) → DDIM over [samples, tokens, latent] (sampling.ts) → VAE decoder →
// per-tensor de-normalisation by the manifest's layout. The same arithmetic as
// models/d2nwg/cnn_generator.py, so the same seed gives the same weights.

import type { InferenceSession } from 'onnxruntime-common';
import type { SelectedBackend } from './runtime';
import { cnnToOnnx } from './onnx-writer';
import { timedStage, type Control } from './progress';
import {
  checkSupport,
  generatorManifestShape,
  graphOutput,
  GeneratorSessions,
  samplingOptions,
  type GeneratedWeights,
  type GenerateOptions,
  type GeneratorFiles,
  type NetworkWeights,
} from './sampling';
import { array, integer, literal, number, object, record, string } from './schema';

const archSchema = object({
  parameters: integer,
  tensors: array(object({ name: string, shape: array(integer), mean: number, std: number })),
  body: array(object({ layer: string, values: integer, chunks: integer, first_position: integer })),
  head_layer: string,
  head_in_features: integer,
  row_position: integer,
  arch_position: integer,
  convs: array(
    object({
      name: string,
      in_channels: integer,
      out_channels: integer,
      kernel: integer,
      padding: integer,
      pool: integer,
    }),
  ),
  dense: array(object({ name: string, in_features: integer, out_features: integer })),
  activation: literal('tanh'),
});
export type CnnArchLayout = ReturnType<typeof archSchema>;

export const cnnManifestSchema = object({
  ...generatorManifestShape,
  family: literal('cnn'),
  input: object({ shape: array(integer), preprocessing: string }),
  layout: object({
    chunk: integer,
    positions: integer,
    token: string,
    condition: string,
    archs: record(archSchema),
  }),
  default_arch: string,
  zoo_reference: object({ file: string, sha256: string, bytes: integer, tasks: integer }),
  trace: object({
    file: string,
    sha256: string,
    max_abs_error: number,
    sample_graph: object({ file: string, sha256: string, bytes: integer }),
  }),
  training_inputs: object({ zoo_table_sha256: string, models: integer, tasks: integer }),
});
export type CnnManifest = ReturnType<typeof cnnManifestSchema>;

/** One generated CNN: its tensors by PyTorch name, in layout order. */
export type CnnWeights = NetworkWeights;

function bodyTokens(layout: CnnArchLayout): number {
  return layout.body.reduce((n, b) => n + b.chunks, 0);
}

/** Position ids of every token of an arch with `classes` class rows (cnn_tokens.py, position_ids). */
export function positionIds(layout: CnnArchLayout, classes: number): number[] {
  const ids: number[] = [];
  for (const b of layout.body) for (let k = 0; k < b.chunks; k++) ids.push(b.first_position + k);
  for (let c = 0; c < classes; c++) ids.push(layout.row_position);
  return ids;
}

/** Normalised tokens [T, chunk] of one network → its named tensors (cnn_tokens.py, to_params). */
export function tokensToWeights(
  layout: CnnArchLayout,
  tokens: Float32Array,
  chunk: number,
  classes: number,
): CnnWeights {
  const stats = new Map(layout.tensors.map((t) => [t.name, t]));
  const out: CnnWeights = {};
  const take = (name: string, values: Float32Array, shape: number[]): void => {
    const s = stats.get(name);
    if (s === undefined) throw new Error(`the manifest has no statistics for ${name}`);
    out[name] = { shape, data: values.map((v) => v * s.std + s.mean) };
  };
  let token = 0;
  for (const b of layout.body) {
    const flat = tokens.subarray(token * chunk, token * chunk + b.values);
    token += b.chunks;
    const weight = stats.get(`${b.layer}.weight`)!;
    const count = weight.shape.reduce((a, x) => a * x, 1);
    take(`${b.layer}.weight`, flat.slice(0, count), weight.shape);
    take(`${b.layer}.bias`, flat.slice(count), stats.get(`${b.layer}.bias`)!.shape);
  }
  const inF = layout.head_in_features;
  const weight = new Float32Array(classes * inF);
  const bias = new Float32Array(classes);
  for (let c = 0; c < classes; c++) {
    const row = tokens.subarray((token + c) * chunk, (token + c) * chunk + inF + 1);
    weight.set(row.subarray(0, inF), c * inF);
    bias[c] = row[inF]!;
  }
  take(`${layout.head_layer}.weight`, weight, [classes, inF]);
  take(`${layout.head_layer}.bias`, bias, [classes]);
  return out;
}

export class CnnGenerator extends GeneratorSessions<CnnManifest> {
  readonly family = 'cnn';

  static async create(
    files: GeneratorFiles<CnnManifest>,
    backend: SelectedBackend,
    decoderSession?: InferenceSession,
  ): Promise<CnnGenerator> {
    return new CnnGenerator(...(await GeneratorSessions.open(files, backend, decoderSession)));
  }

  get archs(): string[] {
    return Object.keys(this.manifest.layout.archs).sort();
  }

  resolveArch(arch: string | undefined): string {
    const name = arch ?? this.manifest.default_arch;
    if (this.manifest.layout.archs[name] === undefined)
      throw new Error(`unknown CNN architecture "${name}"; choose one of ${this.archs.join(', ')}`);
    return name;
  }

  layout(arch: string): CnnArchLayout {
    return this.manifest.layout.archs[this.resolveArch(arch)]!;
  }

  toOnnx(network: NetworkWeights, arch: string, docString: string): Uint8Array {
    return cnnToOnnx(this.layout(arch), network, docString);
  }

  /** ε̂ for `rows` copies of the condition ([rows, T, L] latents), the first `conditional` with it. */
  async eps(
    arch: string,
    x: Float32Array,
    t: number,
    rows: number,
    conditional: number,
    classTokens: Float32Array,
    datasetToken: Float32Array,
  ): Promise<Float32Array> {
    const layout = this.layout(arch);
    const d = datasetToken.length;
    const classes = classTokens.length / d;
    const body = bodyTokens(layout);
    const tokens = body + classes;
    const perRow = new Float32Array(tokens * d);
    for (let k = 0; k < body; k++) perRow.set(datasetToken, k * d);
    perRow.set(classTokens, body * d);
    const cond = new Float32Array(rows * tokens * d);
    const ds = new Float32Array(rows * d);
    for (let b = 0; b < rows; b++) {
      cond.set(perRow, b * tokens * d);
      ds.set(datasetToken, b * d);
    }
    const ids = [layout.arch_position, ...positionIds(layout, classes)];
    const allIds: number[] = [];
    for (let b = 0; b < rows; b++) allIds.push(...ids);
    const scale = new Float32Array(rows);
    scale.fill(1, 0, conditional);
    const outputs = await this.denoiser.run({
      latents: this.float(x, [rows, tokens, this.manifest.latent_dim]),
      timestep: this.float(new Float32Array(rows).fill(t), [rows]),
      class_tokens: this.float(cond, [rows, tokens, d]),
      dataset_token: this.float(ds, [rows, d]),
      token_mask: this.float(new Float32Array(rows * tokens).fill(1), [rows, tokens]),
      condition_scale: this.float(scale, [rows]),
      position_ids: this.int64(allIds, [rows, tokens + 1]),
    });
    return graphOutput(outputs, 'eps');
  }

  /** Networks for final latents x_0 (scaled, as the sampler ends) [S, T, L]. */
  async decode(
    arch: string,
    x0: Float64Array,
    samples: number,
    classes: number,
  ): Promise<CnnWeights[]> {
    const layout = this.layout(arch);
    const { latent_dim: latent, latent_scale: scale } = this.manifest;
    const { chunk } = this.manifest.layout;
    const tokens = bodyTokens(layout) + classes;
    const latents = Float32Array.from(x0, (v) => v / scale);
    const outputs = await this.decoder.run({
      latents: this.float(latents, [samples, tokens, latent]),
      position_ids: this.int64(positionIds(layout, classes), [tokens]),
    });
    const decoded = graphOutput(outputs, 'tokens');
    return Array.from({ length: samples }, (_, s) =>
      tokensToWeights(
        layout,
        decoded.subarray(s * tokens * chunk, (s + 1) * tokens * chunk),
        chunk,
        classes,
      ),
    );
  }

  /** Generates `samples` CNNs (of `options.arch`, else the release's default) for the classes of `support`. */
  async generate(
    support: readonly Float32Array[],
    options: GenerateOptions = {},
    control: Control = {},
  ): Promise<GeneratedWeights> {
    const arch = this.resolveArch(options.arch);
    const layout = this.layout(arch);
    const o = samplingOptions(this.manifest.sampling_defaults, options);
    const dim = this.manifest.backbone.feature_dim;
    const classes = support.length;
    checkSupport(support, dim, this.manifest.max_classes, 'CNNs');
    const { x0, encodeMs, denoiseMs } = await this.sampleLatents(
      support,
      o,
      bodyTokens(layout) + classes,
      (x, t, rows, conditional, classTokens, datasetToken) =>
        this.eps(arch, x, t, rows, conditional, classTokens, datasetToken),
      control,
    );
    const decoded = await timedStage('decode', control, () =>
      this.decode(arch, x0, o.samples, classes),
    );
    return {
      family: 'cnn',
      arch,
      classes,
      options: o,
      networks: decoded.result,
      timingsMs: { encode: encodeMs, denoise: denoiseMs, decode: decoded.ms },
    };
  }
}
