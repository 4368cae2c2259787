// What the worker does for each request, apart from the worker global so that
// Node tests can drive it with real runtime hosts.

import type * as tfTypes from '@tensorflow/tfjs';
import {
  backboneManifestSchema,
  loadBackbone,
  extractFeatures,
  type Backbone,
} from '../engine/backbone';
import { measureBackends, probeGraph } from '../engine/backend-probe';
import { classifierZip, onnxClassifierZip } from '../engine/classifier-export';
import { parse } from '../engine/schema';
import { fetchSource, readJson, readVerified, type FileSource } from '../engine/files';
import { checkGenerator } from '../engine/generator-check';
import { GeneratorRegistry } from '../engine/generators';
import { evaluateWeights, pretrainedHead } from '../engine/evaluation';
import { FINE_TUNING, fineTuneCurves, type FineTuneStart } from '../engine/fine-tune';
import { headOfNetwork, labelled, randomHead, type LabelledFeatures } from '../engine/heads';
import { Mulberry32 } from '../engine/rng';
import type { NetworkWeights } from '../engine/sampling';
import { datasetFeatures, generateWeights, type FeatureExtractor } from '../engine/pipeline';
import type { RgbaImage } from '../engine/preprocess';
import type { Progress } from '../engine/progress';
import {
  describeBackend,
  errorMessage,
  selectBackend,
  type BackendRequest,
  type RuntimeHost,
} from '../engine/runtime';
import { loadSlice, runSlice } from '../engine/slice';
import type { SelectedTfBackend } from '../engine/tf-backend';
import {
  assertNever,
  type FeaturesResult,
  type ImageFile,
  type WorkerEvent,
  type WorkerRequest,
} from './protocol';

/** What feature extraction needs from its surroundings: a decoder and tfjs on a backend. */
export interface FeatureHost {
  decode(bytes: ArrayBuffer, name: string): Promise<RgbaImage>;
  tf(request: BackendRequest): Promise<{ tf: typeof tfTypes; selected: SelectedTfBackend }>;
}

export interface HandlerContext {
  host: RuntimeHost;
  features: FeatureHost;
  post: (event: WorkerEvent) => void;
  /** Where release files come from; defaults to fetching the request's URL. */
  source?: (url: string) => FileSource;
}

/**
 * Returns the worker's request handler. Requests are handled one at a time,
 * in arrival order: onnxruntime-web fails ("Session already started") when
 * sessions are created or run concurrently, and tfjs has one active backend.
 */
export function createHandler(context: HandlerContext): (request: WorkerRequest) => Promise<void> {
  const { post } = context;
  const source = context.source ?? fetchSource;
  const backbones = new Map<string, Promise<Backbone>>(); // by backbone URL and tfjs backend
  const running = new Map<number, AbortController>(); // requests that can be cancelled

  async function backboneFor(url: string, backend: BackendRequest) {
    const { tf, selected } = await context.features.tf(backend);
    const key = `${url} ${selected.backend}`;
    let backbone = backbones.get(key);
    if (backbone === undefined) {
      backbone = loadBackbone(source(url), tf);
      backbones.set(key, backbone);
      backbone.catch(() => backbones.delete(key));
    }
    return { backbone: await backbone, selected };
  }

  // Generators opened once per release URL and reused by every later request.
  const registries = new Map<string, GeneratorRegistry>();
  function generatorsFor(releaseUrl: string): GeneratorRegistry {
    let registry = registries.get(releaseUrl);
    if (registry === undefined) {
      registry = new GeneratorRegistry(context.host, (family) => source(`${releaseUrl}${family}/`));
      registries.set(releaseUrl, registry);
    }
    return registry;
  }

  // Features of the images seen so far, per backbone and backend: running again on the same
  // folder (other settings, another family) extracts nothing twice. Bounded in size.
  const featureCaches = new Map<string, Map<string, Float32Array>>();
  const MAX_CACHED_IMAGES = 20_000;
  function cacheFor(key: string): Map<string, Float32Array> {
    let cache = featureCaches.get(key);
    if (cache === undefined || cache.size > MAX_CACHED_IMAGES) {
      cache = new Map();
      featureCaches.set(key, cache);
    }
    return cache;
  }

  function extractorFor(releaseUrl: string, backend: BackendRequest): FeatureExtractor {
    return {
      cache: cacheFor(`${releaseUrl} ${backend}`),
      decode: (bytes, name) =>
        context.features.decode(
          bytes instanceof ArrayBuffer
            ? bytes
            : (bytes.buffer.slice(
                bytes.byteOffset,
                bytes.byteOffset + bytes.byteLength,
              ) as ArrayBuffer),
          name,
        ),
      backbone: async () => {
        const { backbone, selected } = await backboneFor(`${releaseUrl}backbone/`, backend);
        return { backbone, backendLabel: describeBackend(selected) };
      },
    };
  }

  async function generate(
    request: Extract<WorkerRequest, { type: 'generate' }>,
    signal: AbortSignal,
  ) {
    const { requestId } = request;
    lastRun = null; // fine-tuning follows this run or nothing
    const onProgress = (p: Progress) => post({ type: 'progress', requestId, ...p });
    const asClasses = (classes: { name: string; images: ImageFile[] }[]) =>
      classes.map((c) => ({
        name: c.name,
        images: c.images.map((file) => ({ name: file.name, read: async () => file.bytes })),
      }));
    const generators = generatorsFor(request.releaseUrl);
    const extractor = extractorFor(request.releaseUrl, request.featureBackend);
    const result = await generateWeights(
      {
        family: request.family,
        ...(request.arch !== undefined ? { arch: request.arch } : {}),
        precision: request.precision,
        // The precision asked for when the release ships it, else fp32 (said in the result).
        orFp32: true,
        backend: request.backend,
        options: request.options,
        data: { images: asClasses(request.classes) },
      },
      { generators, extractor },
      { signal, onProgress },
    );
    if (request.query === undefined) {
      post({ type: 'generate-result', requestId, result });
      return;
    }
    // Held-out accuracy: the support's features come from the cache (heads); the query's
    // progress is the evaluate stage's.
    const keepImages = { keepImages: request.family === 'cnn' };
    const quiet = { signal };
    const support = await datasetFeatures(asClasses(request.classes), extractor, quiet, keepImages);
    const query = await datasetFeatures(
      asClasses(request.query),
      extractor,
      {
        signal,
        onProgress: (p) => p.stage === 'features' && onProgress({ ...p, stage: 'evaluate' }),
      },
      keepImages,
    );
    const generator = await generators.open(request.family, {
      precision: request.precision,
      backend: request.backend,
      orFp32: true,
    });
    const manifest = generator.manifest;
    const evaluation = await evaluateWeights(
      request.family,
      result.generated,
      support,
      query,
      manifest.family === 'cnn'
        ? {
            host: context.host,
            manifest,
            source: generators.source('cnn'),
            arch: result.arch,
          }
        : undefined,
      {
        tf: (await context.features.tf(request.featureBackend)).tf,
        ...(result.refinement === null
          ? manifest.family === 'head'
            ? {
                refine: manifest.refine,
                ...(generator.foldPrior ? { foldPrior: generator.foldPrior } : {}),
              }
            : {}
          : { refined: { networks: result.networks, choice: result.refinement } }),
        ...(request.pretrained !== undefined ? { pretrained: request.pretrained } : {}),
      },
    );
    if (request.family === 'head') {
      const headsOf = (networks: readonly NetworkWeights[]) =>
        networks.map((n) => headOfNetwork(n, support.classes.length, support.featureDim));
      const rng = new Mulberry32(0);
      lastRun = {
        support: labelled(support.perClass, support.featureDim),
        query: labelled(query.perClass, query.featureDim),
        starts: [
          { name: 'generated', heads: headsOf(result.generated) },
          ...(result.refinement !== null
            ? [{ name: 'generated + refined', heads: headsOf(result.networks) }]
            : []),
          ...(request.pretrained !== undefined
            ? [
                {
                  name: 'pretrained',
                  heads: [pretrainedHead(request.pretrained, support.classes, support.featureDim)],
                },
              ]
            : []),
          {
            name: 'random init',
            heads: [randomHead(support.classes.length, support.featureDim, () => rng.normal())],
          },
        ],
      };
    }
    post({ type: 'generate-result', requestId, result: { ...result, evaluation } });
  }

  // The support, held-out images and starts of the last evaluated head run, for fine-tuning.
  let lastRun: {
    support: LabelledFeatures;
    query: LabelledFeatures;
    starts: FineTuneStart[];
  } | null = null;

  async function fineTune(
    request: Extract<WorkerRequest, { type: 'fine-tune' }>,
    signal: AbortSignal,
  ) {
    const { requestId } = request;
    const run = lastRun;
    if (run === null)
      throw new Error(
        'fine-tuning needs a generation of heads with held-out images just before it; generate again',
      );
    const epochs = request.epochs ?? FINE_TUNING.epochs;
    const learningRate = request.learningRate ?? FINE_TUNING.learningRate;
    const { tf, selected } = await context.features.tf(request.backend);
    const backend = describeBackend(selected);
    const started = performance.now();
    const curves = await fineTuneCurves(tf, run.starts, run.support, run.query, {
      epochs,
      learningRate,
      signal,
      onEpoch: (series, epoch, accuracy) =>
        post({
          type: 'progress',
          requestId,
          stage: 'fine-tune',
          done: epoch,
          total: epochs,
          backend,
          measured: { series, epoch, accuracy },
        }),
    });
    post({
      type: 'fine-tune-result',
      requestId,
      result: { curves, epochs, learningRate, backend, ms: performance.now() - started },
    });
  }

  async function extract(request: Extract<WorkerRequest, { type: 'extract-features' }>) {
    const { requestId, images: files } = request;
    const total = files.length;
    if (total === 0) throw new Error('no images were given');
    const images: RgbaImage[] = [];
    for (const file of files) {
      post({ type: 'progress', requestId, stage: 'read-images', done: images.length, total });
      images.push(await context.features.decode(file.bytes, file.name));
    }
    post({ type: 'progress', requestId, stage: 'load-backbone', done: 0, total: 1 });
    const { backbone: loaded, selected } = await backboneFor(request.backboneUrl, request.backend);
    const started = performance.now();
    const backend = describeBackend(selected);
    const report = (done: number) =>
      post({ type: 'progress', requestId, stage: 'features', done, total, backend });
    report(0);
    const features = await extractFeatures(loaded, images, { onBatch: report });
    const result: FeaturesResult = {
      backend: selected.backend,
      skipped: selected.skipped,
      backboneId: loaded.manifest.id,
      featureDim: loaded.manifest.feature_dim,
      images: files.map((file, i) => ({
        name: file.name,
        width: images[i]?.width ?? 0,
        height: images[i]?.height ?? 0,
        features: features[i] ?? new Float32Array(),
      })),
      msPerImage: (performance.now() - started) / total,
    };
    post({ type: 'features-result', requestId, result });
  }

  async function handle(request: WorkerRequest): Promise<void> {
    const { requestId } = request;
    try {
      switch (request.type) {
        case 'run-slice': {
          post({ type: 'progress', requestId, stage: 'load-release', done: 0, total: 1 });
          const files = await loadSlice(source(request.releaseUrl));
          post({ type: 'progress', requestId, stage: 'select-backend', done: 0, total: 1 });
          const result = await runSlice(files, request.backend, context.host);
          post({ type: 'slice-result', requestId, result });
          return;
        }
        case 'measure-backends': {
          // What auto takes here first (from a kept verdict, or its own probe), then every backend timed.
          const auto = await selectBackend('auto', context.host, probeGraph().model);
          await auto.probeSession.release();
          const measured = await measureBackends(context.host);
          post({
            type: 'backend-speeds-result',
            requestId,
            result: { ...measured, auto: describeBackend(auto.selected) },
          });
          return;
        }
        case 'extract-features':
          await extract(request);
          return;
        case 'check-generator': {
          const result = await checkGenerator(
            request.family,
            generatorsFor(request.releaseUrl),
            request.backend,
            { onProgress: (p) => post({ type: 'progress', requestId, ...p }) },
          );
          post({ type: 'generator-check-result', requestId, result });
          return;
        }
        case 'generate':
        case 'fine-tune': {
          const controller = running.get(requestId) ?? new AbortController();
          try {
            if (request.type === 'generate') await generate(request, controller.signal);
            else await fineTune(request, controller.signal);
          } finally {
            running.delete(requestId);
          }
          return;
        }
        case 'export-classifier': {
          const files = source(`${request.releaseUrl}backbone/`);
          const manifest = parse(
            backboneManifestSchema,
            await readJson(files, 'backbone.json'),
            'backbone.json',
          );
          const zip = (request.format === 'onnx' ? onnxClassifierZip : classifierZip)(
            await readVerified(files, manifest.model_file.file, manifest.model_file),
            await readVerified(files, manifest.weights_file.file, manifest.weights_file),
            manifest,
            {
              classes: request.classes.length,
              dim: manifest.feature_dim,
              weight: request.weight,
              bias: request.bias,
            },
            request.classes,
            request.about,
          );
          post({ type: 'classifier-result', requestId, result: { zip } });
          return;
        }
        case 'cancel':
          return;
        default:
          assertNever(request);
      }
    } catch (error) {
      post({ type: 'error', requestId, message: errorMessage(error) });
    }
  }

  let tail: Promise<void> = Promise.resolve();
  return (request) => {
    // A cancel acts at once, not after the requests queued before it.
    if (request.type === 'cancel') {
      running.get(request.target)?.abort();
      return Promise.resolve();
    }
    if (request.type === 'generate' || request.type === 'fine-tune')
      running.set(request.requestId, new AbortController());
    tail = tail.then(() => handle(request));
    return tail;
  };
}
