// Generating classifier heads from per-class backbone features with the
// factory's residual generator (models/d2nwg/residual_head.py): the support
// gives a closed-form reference head and a per-class basis (residual-support.ts)
// → encoder graph (the condition of each class row) → DDIM over the residual's
// coordinates (the scheduler math is ours, ddim.ts; one denoiser call per step)
// → decoder graph (reference + coordinates × basis) → heads. The same
// arithmetic as ResidualGenerator.generate_batch, so the same seed gives the
// same heads.

import { unitNormalise, type Head } from './heads';
import { array, integer, literal, nullable, number, object, string } from './schema';
import type { InferenceSession } from 'onnxruntime-common';
import type { SelectedBackend } from './runtime';
import { headToOnnx } from './onnx-writer';
import { refineSpecSchema, type FoldPrior } from './refine';
import { timedStage, type Control } from './progress';
import { decodeSafetensors } from './safetensors';
import {
  buildSupport,
  referenceHead,
  type ResidualSupport,
  type SeenStatistics,
  type SupportSpec,
} from './residual-support';
import {
  checkSupport,
  generatorManifestShape,
  graphOutput as output,
  GeneratorSessions,
  sampleLatents,
  samplingOptions,
  type GeneratedWeights,
  type GenerateOptions,
  type GeneratorFiles,
  type NetworkWeights,
} from './sampling';

const fileSchema = object({ file: string, sha256: string, bytes: integer });

export const headManifestSchema = object({
  ...generatorManifestShape,
  family: literal('head'),
  layout: object({
    architecture: string,
    token: string,
    basis: string,
    tensors: array(object({ name: string, shape: array(string), mean: number, std: number })),
  }),
  /** What the engine needs to build the reference head, the basis and the conditions from a support. */
  support: object({
    statistics: fileSchema,
    shrinkage: number,
    basis: array(string),
    global_rank: integer,
    reference_scale: number,
    image_features: integer,
    class_features: integer,
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

/** The seen datasets' within-class statistics from `statistics.safetensors`. */
export function readStatistics(bytes: Uint8Array): SeenStatistics {
  const { tensors } = decodeSafetensors(bytes);
  const get = (name: string) => {
    const t = tensors[name];
    if (t === undefined) throw new Error(`statistics.safetensors has no tensor "${name}"`);
    return t;
  };
  const vectors = get('eigenvectors');
  const [rank, dim] = vectors.shape as [number, number];
  return {
    eigenvectors: Float32Array.from(vectors.data),
    eigenvalues: Float32Array.from(get('eigenvalues').data),
    variance: Float32Array.from(get('variance').data),
    rank,
    dim,
  };
}

/** The condition of each class row [C, h] repeated for `samples` samples: row s·C + c is class c's. */
function tileCondition(condition: Float32Array, samples: number): Float32Array {
  const tiled = new Float32Array(samples * condition.length);
  for (let s = 0; s < samples; s++) tiled.set(condition, s * condition.length);
  return tiled;
}

/** The manifest's support block as residual-support.ts takes it. */
function supportSpec(manifest: HeadManifest): SupportSpec {
  const s = manifest.support;
  return {
    shrinkage: s.shrinkage,
    basis: s.basis,
    globalRank: s.global_rank,
    referenceScale: s.reference_scale,
  };
}

/**
 * The refine's cross-validation prior for a fold (cv_prior "fold_reference"):
 * the release's closed-form reference head of the fold's training images.
 */
export function referencePrior(manifest: HeadManifest, statistics: SeenStatistics): FoldPrior {
  const spec = supportSpec(manifest);
  const dim = manifest.backbone.feature_dim;
  return (perClass): Head => {
    const { weight, bias } = referenceHead(
      perClass.map((x) => unitNormalise(x, dim)),
      statistics,
      spec,
    );
    return { classes: perClass.length, dim, weight, bias };
  };
}

export class HeadGenerator extends GeneratorSessions<HeadManifest> {
  readonly family = 'head';
  private statistics: SeenStatistics | undefined;

  static async create(
    files: GeneratorFiles<HeadManifest>,
    backend: SelectedBackend,
    decoderSession: InferenceSession | undefined,
    statistics: Uint8Array,
  ): Promise<HeadGenerator> {
    const generator = new HeadGenerator(
      ...(await GeneratorSessions.open(files, backend, decoderSession)),
    );
    generator.statistics = readStatistics(statistics);
    if (generator.statistics.dim !== files.manifest.backbone.feature_dim)
      throw new Error(
        `statistics.safetensors is for ${generator.statistics.dim} features; the backbone gives ${files.manifest.backbone.feature_dim}`,
      );
    return generator;
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

  /** The support's reference head, basis and conditions (unit-normalised features per class). */
  support(support: readonly Float32Array[]): ResidualSupport {
    const dim = this.featureDim;
    return buildSupport(
      support.map((x) => unitNormalise(x, dim)),
      this.statistics!,
      supportSpec(this.manifest),
    );
  }

  /** The refine's cross-validation prior for a fold (referencePrior). */
  get foldPrior(): FoldPrior {
    return referencePrior(this.manifest, this.statistics!);
  }

  /** The condition of each class row [C, h] (encoder graph). */
  async conditionOf(built: ResidualSupport): Promise<Float32Array> {
    const { classes, kmax } = built;
    const outputs = await this.encoder.run({
      image_features: this.float(Float32Array.from(built.imageFeatures), [
        classes,
        kmax,
        this.manifest.support.image_features,
      ]),
      image_mask: this.float(Float32Array.from(built.imageMask), [classes, kmax]),
      class_features: this.float(Float32Array.from(built.classFeatures), [
        classes,
        this.manifest.support.class_features,
      ]),
    });
    return output(outputs, 'condition');
  }

  /** ε̂ for x [S·C, L] at timestep t, row s·C + c conditioned on class c. */
  async eps(
    x: Float32Array,
    t: number,
    samples: number,
    condition: Float32Array,
  ): Promise<Float32Array> {
    return this.epsOfRows(x, t, tileCondition(condition, samples));
  }

  /** ε̂ for x [S·C, L] at timestep t, given each row's condition [S·C, h] (tiled once per run). */
  private async epsOfRows(x: Float32Array, t: number, tiled: Float32Array): Promise<Float32Array> {
    const latent = this.manifest.latent_dim;
    const rows = x.length / latent;
    const outputs = await this.denoiser.run({
      latents: this.float(x, [rows, latent]),
      timestep: this.float(new Float32Array(rows).fill(t), [rows]),
      condition: this.float(tiled, [rows, tiled.length / rows]),
    });
    return output(outputs, 'eps');
  }

  /** Heads for final coordinates x_0 [S, C, L] (decoder graph): weight [S, C, F], bias [S, C]. */
  async decode(
    x0: Float64Array,
    samples: number,
    built: ResidualSupport,
  ): Promise<{ weight: Float32Array; bias: Float32Array; latents: Float32Array }> {
    const latent = this.manifest.latent_dim;
    const dim = this.featureDim;
    const classes = built.classes;
    const latents = Float32Array.from(x0);
    const perClass = new Float32Array(x0.length); // [C, S, L]
    for (let s = 0; s < samples; s++)
      for (let c = 0; c < classes; c++)
        perClass.set(
          latents.subarray((s * classes + c) * latent, (s * classes + c + 1) * latent),
          (c * samples + s) * latent,
        );
    const outputs = await this.decoder.run({
      latents: this.float(perClass, [classes, samples, latent]),
      basis: this.float(Float32Array.from(built.basis), [classes, latent - 1, dim]),
      reference_weight: this.float(Float32Array.from(built.weight), [classes, dim]),
      reference_bias: this.float(Float32Array.from(built.bias), [classes]),
    });
    const w = output(outputs, 'weight'); // [C, S, F]
    const b = output(outputs, 'bias'); // [C, S]
    const weight = new Float32Array(samples * classes * dim);
    const bias = new Float32Array(samples * classes);
    for (let c = 0; c < classes; c++)
      for (let s = 0; s < samples; s++) {
        weight.set(
          w.subarray((c * samples + s) * dim, (c * samples + s + 1) * dim),
          (s * classes + c) * dim,
        );
        bias[s * classes + c] = b[c * samples + s]!;
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
    if (o.guidance !== 1)
      throw new Error(
        `this release's head generator has no unconditional mode: guidance must be 1, got ${o.guidance}`,
      );
    const dim = this.featureDim;
    const classes = support.length;
    checkSupport(support, dim, this.manifest.max_classes, 'heads');
    const encoded = await timedStage('encode', control, async () => {
      const built = this.support(support);
      return { built, condition: await this.conditionOf(built) };
    });
    const { built, condition } = encoded.result;
    const latent = this.manifest.latent_dim;
    const tiled = tileCondition(condition, o.samples); // every DDIM step conditions the same rows
    const denoised = await timedStage(
      'denoise',
      control,
      () =>
        sampleLatents(
          this.manifest.schedule,
          o.samples * classes * latent,
          o,
          (x, t) => this.epsOfRows(x, t, tiled),
          control,
        ),
      { reportUnits: false },
    );
    const decoded = await timedStage('decode', control, () =>
      this.decode(denoised.result, o.samples, built),
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
      latents: { data: latents, dim: latent },
      timingsMs: { encode: encoded.ms, denoise: denoised.ms, decode: decoded.ms },
    };
  }
}
