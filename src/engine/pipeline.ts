// The one generation pipeline (diffusers `DDIMPipeline`: it composes, it does
// not compute): classes of images or of backbone features → the family's
// generator (opened once by the registry) → samples of named tensors, each
// also as a whole ONNX graph. The page's worker, the CLI, the benchmark and the
// trace check all call `generateWeights`; none of them knows the others.

import { extractFeatures, type Backbone } from './backbone';
import { describeGenerator, type GeneratorRegistry, type WeightGenerator } from './generators';
import type { RgbaImage } from './preprocess';
import { throwIfCancelled, timedStage, type Control } from './progress';
import { errorMessage, type Backend, type BackendAttempt, type BackendRequest } from './runtime';
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
}

/** A dataset as the generator sees it: per class, the features of the images that could be read. */
export interface DatasetFeatures {
  classes: string[];
  /** Per class: [K_c × featureDim]. */
  perClass: Float32Array[];
  featureDim: number;
  /** Files that could not be decoded, each "name: why"; they were left out. */
  unreadable: string[];
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

/** Decodes every class's images and extracts their backbone features, reporting both stages. */
export async function datasetFeatures(
  classes: readonly ClassImages[],
  extractor: FeatureExtractor,
  control: Control = {},
  { keepImages = false }: { keepImages?: boolean } = {},
): Promise<DatasetFeatures> {
  const { signal, onProgress } = control;
  const total = classes.reduce((n, c) => n + c.images.length, 0);
  const unreadable: string[] = [];
  const decoded: RgbaImage[][] = [];
  let done = 0;
  onProgress?.({ stage: 'read-images', done, total });
  for (const c of classes) {
    const images: RgbaImage[] = [];
    for (const file of c.images) {
      throwIfCancelled(signal);
      try {
        images.push(await extractor.decode(await file.read(), file.name));
      } catch (error) {
        unreadable.push(errorMessage(error)); // decoders name the file
      }
      onProgress?.({ stage: 'read-images', done: ++done, total });
    }
    if (images.length === 0)
      throw new Error(
        `no image of class "${c.name}" could be read${unreadable.length ? ` (${unreadable.at(-1)})` : ''}`,
      );
    decoded.push(images);
  }
  throwIfCancelled(signal);
  const started = performance.now();
  const loaded = await timedStage('load-backbone', control, () => extractor.backbone());
  const { backbone, backendLabel } = loaded.result;
  const dim = backbone.manifest.feature_dim;
  const readable = decoded.reduce((n, d) => n + d.length, 0);
  const perClass: Float32Array[] = [];
  done = 0;
  onProgress?.({ stage: 'features', done, total: readable });
  for (const images of decoded) {
    throwIfCancelled(signal);
    const features = await extractFeatures(backbone, images, {
      onBatch: (n) => onProgress?.({ stage: 'features', done: done + n, total: readable }),
    });
    done += images.length;
    const matrix = new Float32Array(features.length * dim);
    features.forEach((f, i) => matrix.set(f, i * dim));
    perClass.push(matrix);
  }
  return {
    classes: classes.map((c) => c.name),
    perClass,
    featureDim: dim,
    unreadable,
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
  /** Per sample: its tensors by PyTorch name, in layout order. */
  networks: NetworkWeights[];
  /** Per sample: the whole network as ONNX (empty when not asked for). */
  onnx: Uint8Array[];
  timingsMs: {
    loadGenerator: number;
    features: number;
    encode: number;
    denoise: number;
    decode: number;
    export: number;
  };
}

/** What an ONNX file says about where it came from. */
export function docString(
  generator: WeightGenerator,
  arch: string,
  seed: number,
  classes: string[],
): string {
  const { family } = generator;
  const what = family === 'cnn' ? `${family} family (${arch})` : `${family} family`;
  return `D2NWG Web ${generator.manifest.release_version}, ${what}, seed ${seed}; classes ${JSON.stringify(classes)}`;
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
    control,
  );
  const exportStarted = performance.now();
  const onnx: Uint8Array[] = [];
  if (request.onnx ?? true) {
    const doc = docString(generator, arch, generated.options.seed, dataset.classes);
    for (const [s, network] of generated.networks.entries()) {
      throwIfCancelled(control.signal);
      onnx.push(generator.toOnnx(network, arch, doc));
      control.onProgress?.({ stage: 'export', done: s + 1, total: generated.networks.length });
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
    networks: generated.networks,
    onnx,
    timingsMs: {
      loadGenerator: opened.ms,
      features: dataset.featuresMs,
      ...generated.timingsMs,
      export: performance.now() - exportStarted,
    },
  };
}
