// Generating classifier heads from per-class backbone features, with the
// factory's three exported graphs: dataset encoder → DDIM over latents (the
// scheduler math is ours, ddim.ts; one denoiser graph call per step) → VAE
// decoder → de-normalised weights. The same arithmetic as
// models/d2nwg/head_generator.py, so the same seed gives the same heads.

import { unitNormalise } from './heads';
import { array, integer, literal, nullable, number, object, string } from './schema';
import type { InferenceSession } from 'onnxruntime-common';
import type { SelectedBackend } from './runtime';
import { headToOnnx } from './onnx-writer';
import { refineSpecSchema } from './refine';
import { timedStage, type Control } from './progress';
import {
  checkSupport,
  generatorManifestShape,
  graphOutput as output,
  GeneratorSessions,
  samplingOptions,
  type GeneratedWeights,
  type GenerateOptions,
  type GeneratorFiles,
  type NetworkWeights,
} from './sampling';

export const headManifestSchema = object({
  ...generatorManifestShape,
  family: literal('head'),
  layout: object({
    architecture: string,
    token: string,
    basis: string,
    tensors: array(object({ name: string, shape: array(string), mean: number, std: number })),
  }),
  trace: object({ file: string, sha256: string, max_abs_error: number }),
  training_inputs: object({
    zoo_table_sha256: string,
    heads: integer,
    tasks: integer,
    rows: integer,
  }),
  refine: refineSpecSchema,
  /** The zoo's latents for the page's latent map (models/d2nwg/latent_map.py), when built. */
  latent_map: nullable(object({ file: string, sha256: string, bytes: integer })),
});
export type HeadManifest = ReturnType<typeof headManifestSchema>;

/**
 * The decoder's support directions [C, 2, F] (models/d2nwg/head_tokens.py,
 * support_basis): each class's unit mean of its unit-norm features, and the
 * mean over classes of those.
 */
export function supportBasis(support: readonly Float32Array[], dim: number): Float32Array {
  const classes = support.length;
  const means = new Float64Array(classes * dim);
  support.forEach((features, c) => {
    const rows = features.length / dim;
    const unit = unitNormalise(features, dim);
    for (let r = 0; r < rows; r++)
      for (let j = 0; j < dim; j++) means[c * dim + j]! += unit[r * dim + j]! / rows;
  });
  const unitMeans = unitNormalise(Float32Array.from(means), dim);
  const centre = new Float64Array(dim);
  for (let c = 0; c < classes; c++)
    for (let j = 0; j < dim; j++) centre[j]! += unitMeans[c * dim + j]! / classes;
  const basis = new Float32Array(classes * 2 * dim);
  for (let c = 0; c < classes; c++) {
    basis.set(unitMeans.subarray(c * dim, (c + 1) * dim), c * 2 * dim);
    basis.set(Float32Array.from(centre), c * 2 * dim + dim);
  }
  return basis;
}

export class HeadGenerator extends GeneratorSessions<HeadManifest> {
  readonly family = 'head';

  static async create(
    files: GeneratorFiles<HeadManifest>,
    backend: SelectedBackend,
    decoderSession?: InferenceSession,
  ): Promise<HeadGenerator> {
    return new HeadGenerator(...(await GeneratorSessions.open(files, backend, decoderSession)));
  }

  /** Heads have one architecture, the manifest's. */
  resolveArch(arch: string | undefined): string {
    const only = this.manifest.layout.architecture;
    if (arch !== undefined && arch !== only)
      throw new Error(`the head family has one architecture, ${only}; got "${arch}"`);
    return only;
  }

  toOnnx(network: NetworkWeights, _arch: string, docString: string): Uint8Array {
    const { weight, bias } = network;
    if (weight === undefined || bias === undefined)
      throw new Error('a head needs its weight and bias tensors');
    return headToOnnx(weight.data, bias.data, bias.shape[0]!, this.featureDim, docString);
  }

  get featureDim(): number {
    return this.manifest.backbone.feature_dim;
  }

  /** ε̂ for `rows` copies of the condition: the first `conditional` rows with it, the rest without. */
  async eps(
    x: Float32Array,
    t: number,
    rows: number,
    conditional: number,
    classes: number,
    classTokens: Float32Array,
    datasetToken: Float32Array,
  ): Promise<Float32Array> {
    const latent = this.manifest.latent_dim;
    const d = datasetToken.length;
    const cls = new Float32Array(rows * classes * d);
    const ds = new Float32Array(rows * d);
    for (let b = 0; b < rows; b++) {
      cls.set(classTokens, b * classes * d);
      ds.set(datasetToken, b * d);
    }
    const scale = new Float32Array(rows);
    scale.fill(1, 0, conditional);
    const outputs = await this.denoiser.run({
      latents: this.float(x, [rows, classes, latent]),
      timestep: this.float(new Float32Array(rows).fill(t), [rows]),
      class_tokens: this.float(cls, [rows, classes, d]),
      dataset_token: this.float(ds, [rows, d]),
      token_mask: this.float(new Float32Array(rows * classes).fill(1), [rows, classes]),
      condition_scale: this.float(scale, [rows]),
    });
    return output(outputs, 'eps');
  }

  /** Decoded heads for final latents x_0 (scaled, as the sampler ends) [S, C, L]. */
  async decode(
    x0: Float64Array,
    samples: number,
    basis: Float32Array,
  ): Promise<{ weight: Float32Array; bias: Float32Array; latents: Float32Array }> {
    const latent = this.manifest.latent_dim;
    const dim = this.featureDim;
    const classes = basis.length / (2 * dim);
    const latents = new Float32Array(x0.length);
    for (let i = 0; i < x0.length; i++) latents[i] = x0[i]! / this.manifest.latent_scale;
    const tiled = new Float32Array(samples * basis.length);
    for (let s = 0; s < samples; s++) tiled.set(basis, s * basis.length);
    const outputs = await this.decoder.run({
      latents: this.float(latents, [samples * classes, latent]),
      basis: this.float(tiled, [samples * classes, 2, dim]),
    });
    const tokens = output(outputs, 'tokens');
    const [w, b] = this.manifest.layout.tensors;
    const weight = new Float32Array(samples * classes * dim);
    const bias = new Float32Array(samples * classes);
    for (let row = 0; row < samples * classes; row++) {
      for (let j = 0; j < dim; j++)
        weight[row * dim + j] = tokens[row * (dim + 1) + j]! * w!.std + w!.mean;
      bias[row] = tokens[row * (dim + 1) + dim]! * b!.std + b!.mean;
    }
    return { weight, bias, latents };
  }

  /** Generates `samples` heads for the classes of `support` (per class [K_c × F] features). */
  async generate(
    support: readonly Float32Array[],
    options: GenerateOptions = {},
    control: Control = {},
  ): Promise<GeneratedWeights> {
    const arch = this.resolveArch(options.arch);
    const o = samplingOptions(this.manifest.sampling_defaults, options);
    const dim = this.featureDim;
    const classes = support.length;
    checkSupport(support, dim, this.manifest.max_classes, 'heads');
    const { x0, encodeMs, denoiseMs } = await this.sampleLatents(
      support,
      o,
      classes,
      (x, t, rows, conditional, classTokens, datasetToken) =>
        this.eps(x, t, rows, conditional, classes, classTokens, datasetToken),
      control,
    );
    const decoded = await timedStage('decode', control, () =>
      this.decode(x0, o.samples, supportBasis(support, dim)),
    );
    const { weight, bias, latents } = decoded.result;
    const networks = Array.from({ length: o.samples }, (_, s) => ({
      weight: {
        shape: [classes, dim],
        data: weight.slice(s * classes * dim, (s + 1) * classes * dim),
      },
      bias: { shape: [classes], data: bias.slice(s * classes, (s + 1) * classes) },
    }));
    return {
      family: 'head',
      arch,
      classes,
      options: o,
      networks,
      latents: { data: latents, dim: this.manifest.latent_dim },
      timingsMs: { encode: encodeMs, denoise: denoiseMs, decode: decoded.ms },
    };
  }
}
