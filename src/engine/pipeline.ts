// The one generation pipeline (diffusers `DDIMPipeline`: it composes, it does
// not compute): classes of images or of backbone features → the family's
// generator (opened once by the registry) → samples of named tensors, each
// also as a whole ONNX graph. The page's worker, the CLI, the benchmark and the
// trace check all call `generateWeights`; none of them knows the others.

import { extractFeatures, type Backbone } from './backbone';
import { describeGenerator, type GeneratorRegistry, type WeightGenerator } from './generators';
import { sha256Hex } from './files';
import { describeRefinement, refineNetworks, type LambdaChoice } from './refine';
import type { RgbaImage } from './preprocess';
import { onBackend, throwIfCancelled, timedStage, type Control } from './progress';
import {
  describeBackend,
  errorMessage,
  type Backend,
  type BackendAttempt,
  type BackendRequest,
} from './runtime';
import type { Family, NetworkWeights, Precision, SamplingOptions } from './sampling';

/** An image file as a person handed it over, read only when its turn comes (bounded memory). */
export interface ImageInput {
  name: string;
  read(): Promise<Uint8Array | ArrayBuffer>;
}

export interface ClassImages {
  name: string;
  images: ImageInput[];
}

/** Backbone features of one class's images: [K × featureDim], row-major. */
export interface ClassFeatures {
  name: string;
  features: Float32Array;
}

/** Turns image files into backbone features: a decoder and the (lazily loaded) backbone. */
export interface FeatureExtractor {
  decode(bytes: Uint8Array | ArrayBuffer, name: string): Promise<RgbaImage>;
  backbone(): Promise<{ backbone: Backbone; backendLabel: string }>;
  /** Features of images seen before, by the sha256 of their bytes (the page keeps its folder's). */
  cache?: Map<string, Float32Array>;
}

/** A dataset as the generator sees it: per class, the features of the images that could be read. */
export interface DatasetFeatures {
  classes: string[];
  /** Per class: [K_c × featureDim]. */
  perClass: Float32Array[];
  featureDim: number;
  /** Files that could not be decoded, each "name: why"; they were left out. */
  unreadable: string[];
  /** Per class, the names of the images behind the feature rows, in row order (when read from files). */
  names?: string[][];
  /** The backend the backbone ran on, for people; null when features were given. */
  featureBackend: string | null;
  featuresMs: number;
  /** Per class, the decoded images, when asked for (the cnn family's 28×28 inputs). */
  decoded?: RgbaImage[][];
}

/** At least 2 classes, and no more than `maxClasses`: checked before any image is read. */
export function checkClassCount(classes: number, maxClasses: number, what: string): void {
  if (classes < 2)
    throw new Error(
      `a classifier needs at least 2 classes (one folder of images per class); got ${classes}`,
    );
  if (classes > maxClasses)
    throw new Error(`${classes} classes; this release generates ${what} of up to ${maxClasses}`);
}

/** Images decoded and featurised at a time: memory stays bounded however many images there are. */
const BATCH = 16;

/**
 * Decodes every class's images and extracts their backbone features, a batch
 * at a time (only a batch of decoded images is held, unless `keepImages`).
 * Images whose bytes the extractor's cache knows are not decoded again.
 */
export async function datasetFeatures(
  classes: readonly ClassImages[],
  extractor: FeatureExtractor,
  control: Control = {},
  { keepImages = false }: { keepImages?: boolean } = {},
): Promise<DatasetFeatures> {
  const { signal, onProgress } = control;
  const total = classes.reduce((n, c) => n + c.images.length, 0);
  const started = performance.now();
  const loaded = await timedStage('load-backbone', control, () => extractor.backbone());
  const { backbone, backendLabel } = loaded.result;
  const dim = backbone.manifest.feature_dim;
  const cache = keepImages ? undefined : extractor.cache;
  const unreadable: string[] = [];
  const decoded: RgbaImage[][] = [];
  const perClass: Float32Array[] = [];
  const names: string[][] = [];
  let done = 0;
  const report = () => onProgress?.({ stage: 'features', done, total, backend: backendLabel });
  report();
  for (const c of classes) {
    const rows: Float32Array[] = [];
    const rowNames: string[] = [];
    const kept: RgbaImage[] = [];
    for (let start = 0; start < c.images.length; start += BATCH) {
      const batch: { image: RgbaImage; key: string | null; row: number }[] = [];
      for (const file of c.images.slice(start, start + BATCH)) {
        throwIfCancelled(signal);
        try {
          const bytes = await file.read();
          const key = cache ? await sha256Hex(new Uint8Array(bytes)) : null;
          const known = key !== null ? cache?.get(key) : undefined;
          if (known !== undefined) {
            rows.push(known);
            rowNames.push(file.name);
            done++;
          } else {
            const image = await extractor.decode(bytes, file.name);
            batch.push({ image, key, row: rows.length });
            rows.push(new Float32Array(0)); // filled below
            rowNames.push(file.name);
            if (keepImages) kept.push(image);
          }
        } catch (error) {
          unreadable.push(errorMessage(error)); // decoders name the file
          done++;
        }
      }
      if (batch.length > 0) {
        const features = await extractFeatures(
          backbone,
          batch.map((b) => b.image),
        );
        batch.forEach((b, i) => {
          rows[b.row] = features[i]!;
          if (b.key !== null) cache?.set(b.key, features[i]!);
        });
        done += batch.length;
      }
      report();
    }
    if (rows.length === 0)
      throw new Error(
        `no image of class "${c.name}" could be read${unreadable.length ? ` (${unreadable.at(-1)})` : ''}`,
      );
    const matrix = new Float32Array(rows.length * dim);
    rows.forEach((f, i) => matrix.set(f, i * dim));
    perClass.push(matrix);
    names.push(rowNames);
    if (keepImages) decoded.push(kept);
  }
  return {
    classes: classes.map((c) => c.name),
    perClass,
    featureDim: dim,
    unreadable,
    names,
    featureBackend: backendLabel,
    featuresMs: performance.now() - started,
    ...(keepImages ? { decoded } : {}),
  };
}

/** Features given directly (the trace check, the benchmark, tests). */
export function givenFeatures(
  classes: readonly ClassFeatures[],
  featureDim: number,
): DatasetFeatures {
  return {
    classes: classes.map((c) => c.name),
    perClass: classes.map((c) => c.features),
    featureDim,
    unreadable: [],
    featureBackend: null,
    featuresMs: 0,
  };
}

export interface GenerateRequest {
  family: Family;
  /** cnn: cnn-s or cnn-w; defaults to the manifest's default. */
  arch?: string;
  precision?: Precision;
  /** A precision the release does not ship falls back to fp32 (the result says which ran). */
  orFp32?: boolean;
  backend?: BackendRequest;
  options?: Partial<SamplingOptions>;
  /** Classes of image files (decoded and featurised here) or of backbone features. */
  data: { images: readonly ClassImages[] } | { features: readonly ClassFeatures[] };
  /** Write each network as ONNX too (default true). */
  onnx?: boolean;
  /**
   * head: refine each generated head toward the support images (refine.ts) and
   * deliver the refined heads (default true); the plain ones stay in `generated`.
   */
  refine?: boolean;
}

export interface PipelineContext {
  generators: GeneratorRegistry;
  /** Needed when the request holds image files. */
  extractor?: FeatureExtractor;
}

export interface GenerationResult {
  family: Family;
  arch: string;
  classes: string[];
  imagesPerClass: number[];
  /** Files that could not be decoded, each "name: why"; they were left out. */
  unreadable: string[];
  /** The backend the generator's graphs ran on, and the backends skipped before it. */
  backend: Backend;
  skipped: readonly BackendAttempt[];
  /** The backend the backbone ran on (tfjs), or null when features were given. */
  featureBackend: string | null;
  releaseVersion: string;
  /** The precision of the graphs that ran. */
  precision: Precision;
  options: SamplingOptions;
  /** Per sample: its tensors by PyTorch name, in layout order; refined when `refinement` says so. */
  networks: NetworkWeights[];
  /** Per sample, as the generator made it (the same arrays as `networks` when not refined). */
  generated: NetworkWeights[];
  /** How the delivered heads were refined; null when they are the plain generated ones. */
  refinement: LambdaChoice | null;
  /** head: the latents each sample was decoded from, [samples × classes × dim] (the latent map). */
  latents: { data: Float32Array; dim: number } | null;
  /** Per sample: the whole network as ONNX (empty when not asked for). */
  onnx: Uint8Array[];
  /** Per sample: the plain generated network as ONNX (the same as `onnx` when not refined). */
  generatedOnnx: Uint8Array[];
  timingsMs: {
    loadGenerator: number;
    features: number;
    encode: number;
    denoise: number;
    decode: number;
    refine: number;
    export: number;
  };
}

/** What an ONNX file says about where it came from. */
export function docString(
  generator: WeightGenerator,
  arch: string,
  seed: number,
  classes: string[],
  refinement: LambdaChoice | null = null,
): string {
  const { family } = generator;
  const what = family === 'cnn' ? `${family} family (${arch})` : `${family} family`;
  const how = refinement === null ? '' : `, ${describeRefinement(refinement)}`;
  return `D2NWG Web ${generator.manifest.release_version}, ${what}, seed ${seed}${how}; classes ${JSON.stringify(classes)}`;
}

/**
 * Generates weights for a dataset. The generator is opened (backend chosen,
 * architecture and class count checked) before any image is read, so a wrong
 * setting fails in a second, not after feature extraction.
 */
export async function generateWeights(
  request: GenerateRequest,
  context: PipelineContext,
  control: Control = {},
): Promise<GenerationResult> {
  const names =
    'images' in request.data
      ? request.data.images.map((c) => c.name)
      : request.data.features.map((c) => c.name);
  const opened = await timedStage('load-generator', control, () =>
    context.generators.open(request.family, {
      precision: request.precision ?? 'fp32',
      backend: request.backend ?? 'auto',
      orFp32: request.orFp32 ?? false,
    }),
  );
  const generator = opened.result;
  const generatorControl = onBackend(control, describeBackend(generator.backend));
  const description = describeGenerator(generator.manifest);
  const arch = generator.resolveArch(request.arch);
  checkClassCount(
    names.length,
    description.maxClasses,
    request.family === 'head' ? 'heads' : 'CNNs',
  );
  let dataset: DatasetFeatures;
  if ('images' in request.data) {
    if (context.extractor === undefined)
      throw new Error('images were given but no feature extractor');
    dataset = await datasetFeatures(request.data.images, context.extractor, control);
  } else {
    dataset = givenFeatures(request.data.features, description.featureDim);
  }
  if (dataset.featureDim !== description.featureDim)
    throw new Error(
      `the features have ${dataset.featureDim} values per image; the generator takes ${description.featureDim}`,
    );
  throwIfCancelled(control.signal);
  const generated = await generator.generate(
    dataset.perClass,
    { ...request.options, arch },
    generatorControl,
  );
  let networks = generated.networks;
  let refinement: LambdaChoice | null = null;
  const refineStarted = performance.now();
  if (generator.manifest.family === 'head' && (request.refine ?? true)) {
    generatorControl.onProgress?.({ stage: 'refine', done: 0, total: 1 });
    const refined = refineNetworks(
      generated.networks,
      dataset.perClass,
      dataset.featureDim,
      generator.manifest.refine,
      generator.foldPrior,
    );
    networks = refined.networks;
    refinement = refined.choice;
    generatorControl.onProgress?.({ stage: 'refine', done: 1, total: 1 });
  }
  const refineMs = performance.now() - refineStarted;
  throwIfCancelled(control.signal);
  const exportStarted = performance.now();
  const onnx: Uint8Array[] = [];
  let generatedOnnx = onnx;
  if (request.onnx ?? true) {
    const seed = generated.options.seed;
    const doc = docString(generator, arch, seed, dataset.classes, refinement);
    const plainDoc = docString(generator, arch, seed, dataset.classes);
    if (refinement !== null) generatedOnnx = [];
    const total = networks.length;
    for (const [s, network] of networks.entries()) {
      throwIfCancelled(control.signal);
      onnx.push(generator.toOnnx(network, arch, doc));
      if (refinement !== null)
        generatedOnnx.push(generator.toOnnx(generated.networks[s]!, arch, plainDoc));
      generatorControl.onProgress?.({ stage: 'export', done: s + 1, total });
    }
  }
  return {
    family: request.family,
    arch,
    classes: dataset.classes,
    imagesPerClass: dataset.perClass.map((m) => m.length / dataset.featureDim),
    unreadable: dataset.unreadable,
    backend: generator.backend.backend,
    skipped: generator.backend.skipped,
    featureBackend: dataset.featureBackend,
    releaseVersion: generator.manifest.release_version,
    precision: generator.precision,
    options: generated.options,
    networks,
    generated: generated.networks,
    refinement,
    latents: generated.latents ?? null,
    onnx,
    generatedOnnx,
    timingsMs: {
      loadGenerator: opened.ms,
      features: dataset.featuresMs,
      ...generated.timingsMs,
      refine: refineMs,
      export: performance.now() - exportStarted,
    },
  };
}
