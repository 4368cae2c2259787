// What the worker does for each request, apart from the worker global so that
// Node tests can drive it with real runtime hosts.

import type * as tfTypes from '@tensorflow/tfjs';
import { loadBackbone, extractFeatures, type Backbone } from '../engine/backbone';
import { fetchSource, type FileSource } from '../engine/files';
import type { RgbaImage } from '../engine/preprocess';
import { errorMessage, type BackendRequest, type RuntimeHost } from '../engine/runtime';
import { loadSlice, runSlice } from '../engine/slice';
import type { SelectedTfBackend } from '../engine/tf-backend';
import { assertNever, type FeaturesResult, type WorkerEvent, type WorkerRequest } from './protocol';

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
    const { tf, selected } = await context.features.tf(request.backend);
    const key = `${request.backboneUrl} ${selected.backend}`;
    let backbone = backbones.get(key);
    if (backbone === undefined) {
      backbone = loadBackbone(source(request.backboneUrl), tf);
      backbones.set(key, backbone);
      backbone.catch(() => backbones.delete(key));
    }
    const loaded = await backbone;
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
        default:
          assertNever(request);
      }
    } catch (error) {
      post({ type: 'error', requestId, message: errorMessage(error) });
    }
  }

  let tail: Promise<void> = Promise.resolve();
  return (request) => {
    tail = tail.then(() => handle(request));
    return tail;
  };
}
