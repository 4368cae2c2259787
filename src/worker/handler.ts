// What the worker does for each request, apart from the worker global so that
// Node tests can drive it with real runtime hosts.

import type * as tfTypes from '@tensorflow/tfjs';
import { loadBackbone, extractFeatures, type Backbone } from '../engine/backbone';
import { CnnGenerator, loadCnnGeneratorFiles } from '../engine/cnn-generator';
import { fetchSource, type FileSource } from '../engine/files';
import { checkGenerator } from '../engine/generator-check';
import { HeadGenerator, loadHeadGeneratorFiles } from '../engine/head-generator';
import { cnnToOnnx, headToOnnx } from '../engine/onnx-writer';
import type { RgbaImage } from '../engine/preprocess';
import {
  describeBackend,
  errorMessage,
  selectBackend,
  type BackendRequest,
  type RuntimeHost,
} from '../engine/runtime';
import {
  GenerationCancelled,
  type GenerationProgress,
  type SamplingOptions,
} from '../engine/sampling';
import { loadSlice, runSlice } from '../engine/slice';
import type { SelectedTfBackend } from '../engine/tf-backend';
import {
  assertNever,
  type FeaturesResult,
  type GenerateResult,
  type Stage,
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

  async function generate(
    request: Extract<WorkerRequest, { type: 'generate' }>,
    signal: AbortSignal,
  ) {
    const { requestId } = request;
    const stop = () => {
      if (signal.aborted) throw new GenerationCancelled();
    };
    const progress = (stage: Stage, done: number, total: number) =>
      post({ type: 'progress', requestId, stage, done, total });
    if (request.classes.length < 2)
      throw new Error(
        `a classifier needs at least 2 classes (one folder of images per class); got ${request.classes.length}`,
      );
    const total = request.classes.reduce((n, c) => n + c.images.length, 0);
    const unreadable: string[] = [];
    const decoded: RgbaImage[][] = [];
    let done = 0;
    for (const c of request.classes) {
      const images: RgbaImage[] = [];
      for (const file of c.images) {
        stop();
        progress('decoding', done++, total);
        try {
          images.push(await context.features.decode(file.bytes, file.name));
        } catch (error) {
          unreadable.push(errorMessage(error));
        }
      }
      if (images.length === 0)
        throw new Error(
          `no image of class "${c.name}" could be read${unreadable.length ? `: ${unreadable.at(-1)}` : ''}`,
        );
      decoded.push(images);
    }
    progress('loading-backbone', 0, total);
    const started = performance.now();
    const { backbone, selected: tfBackend } = await backboneFor(
      request.backboneUrl,
      request.backend,
    );
    const dim = backbone.manifest.feature_dim;
    const perClass: Float32Array[] = [];
    done = 0;
    for (const images of decoded) {
      stop();
      const features = await extractFeatures(backbone, images, {
        onBatch: (n) => progress('extracting', done + n, total),
      });
      done += images.length;
      const matrix = new Float32Array(features.length * dim);
      features.forEach((f, i) => matrix.set(f, i * dim));
      perClass.push(matrix);
    }
    const featuresMs = performance.now() - started;
    stop();
    progress('loading-generator', 0, 1);
    const generatorSource = source(request.generatorUrl);
    const onProgress = (p: GenerationProgress) => {
      const stage =
        p.stage === 'encode'
          ? 'encoding'
          : p.stage === 'denoise'
            ? 'denoising'
            : 'decoding-weights';
      progress(stage, p.done, p.total);
    };
    const control = { signal, onProgress };
    const doc = (release: string) =>
      `D2NWG Web ${release}, ${request.family} family; classes ${JSON.stringify(request.classes.map((c) => c.name))}`;
    const base = {
      classes: request.classes.map((c) => c.name),
      imagesPerClass: decoded.map((d) => d.length),
      unreadable,
      featureBackend: describeBackend(tfBackend),
    };
    // The precision asked for when the release ships it, else fp32 (said in the result).
    const fallback = { orFp32: true };
    let result: GenerateResult;
    if (request.family === 'head') {
      const files = await loadHeadGeneratorFiles(generatorSource, request.precision, fallback);
      const { selected, probeSession } = await selectBackend(
        request.backend,
        context.host,
        files.decoder,
      );
      await probeSession.release();
      const generator = await HeadGenerator.create(files, selected);
      try {
        const options: SamplingOptions = {
          ...files.manifest.sampling_defaults,
          ...request.options,
        };
        const heads = await generator.generate(perClass, options, control);
        const c = heads.classes;
        const networks = Array.from({ length: heads.samples }, (_, s) => ({
          weight: { shape: [c, dim], data: heads.weight.slice(s * c * dim, (s + 1) * c * dim) },
          bias: { shape: [c], data: heads.bias.slice(s * c, (s + 1) * c) },
        }));
        result = {
          ...base,
          family: 'head',
          backend: selected.backend,
          skipped: selected.skipped,
          releaseVersion: files.manifest.release_version,
          precision: files.precision,
          options,
          networks,
          onnx: networks.map((n) =>
            headToOnnx(n.weight!.data, n.bias!.data, c, dim, doc(files.manifest.release_version)),
          ),
          timingsMs: { features: featuresMs, ...heads.timingsMs },
        };
      } finally {
        await generator.release();
      }
    } else {
      const files = await loadCnnGeneratorFiles(generatorSource, request.precision, fallback);
      const arch = request.arch ?? 'cnn-w';
      const { selected, probeSession } = await selectBackend(
        request.backend,
        context.host,
        files.decoder,
      );
      await probeSession.release();
      const generator = await CnnGenerator.create(files, selected);
      try {
        const options: SamplingOptions = {
          ...files.manifest.sampling_defaults,
          ...request.options,
        };
        const cnns = await generator.generate(arch, perClass, options, control);
        result = {
          ...base,
          family: 'cnn',
          arch,
          backend: selected.backend,
          skipped: selected.skipped,
          releaseVersion: files.manifest.release_version,
          precision: files.precision,
          options,
          networks: cnns.networks,
          onnx: cnns.networks.map((n) =>
            cnnToOnnx(generator.layout(arch), n, doc(files.manifest.release_version)),
          ),
          timingsMs: { features: featuresMs, ...cnns.timingsMs },
        };
      } finally {
        await generator.release();
      }
    }
    post({ type: 'generate-result', requestId, result });
  }

  async function extract(request: Extract<WorkerRequest, { type: 'extract-features' }>) {
    const { requestId, images: files } = request;
    const total = files.length;
    if (total === 0) throw new Error('no images were given');
    const images: RgbaImage[] = [];
    for (const file of files) {
      post({ type: 'progress', requestId, stage: 'decoding', done: images.length, total });
      images.push(await context.features.decode(file.bytes, file.name));
    }
    post({ type: 'progress', requestId, stage: 'loading-backbone', done: 0, total });
    const { backbone: loaded, selected } = await backboneFor(request.backboneUrl, request.backend);
    const started = performance.now();
    post({ type: 'progress', requestId, stage: 'extracting', done: 0, total });
    const features = await extractFeatures(loaded, images, {
      onBatch: (done) => post({ type: 'progress', requestId, stage: 'extracting', done, total }),
    });
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
          post({ type: 'progress', requestId, stage: 'loading', done: 0, total: 1 });
          const files = await loadSlice(source(request.releaseUrl));
          post({ type: 'progress', requestId, stage: 'selecting-backend', done: 0, total: 1 });
          const result = await runSlice(files, request.backend, context.host);
          post({ type: 'slice-result', requestId, result });
          return;
        }
        case 'extract-features':
          await extract(request);
          return;
        case 'check-generator': {
          post({ type: 'progress', requestId, stage: 'loading-generator', done: 0, total: 1 });
          const result = await checkGenerator(
            request.family,
            source(request.generatorUrl),
            request.backend,
            context.host,
          );
          post({ type: 'generator-check-result', requestId, result });
          return;
        }
        case 'generate': {
          const controller = running.get(requestId) ?? new AbortController();
          try {
            await generate(request, controller.signal);
          } finally {
            running.delete(requestId);
          }
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
    if (request.type === 'generate') running.set(request.requestId, new AbortController());
    tail = tail.then(() => handle(request));
    return tail;
  };
}
