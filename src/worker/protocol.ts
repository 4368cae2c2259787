// The typed protocol between the page and its worker. The page sends requests;
// the worker answers each with progress events and exactly one result or error.

import type { BackendAttempt, BackendRequest } from '../engine/runtime';
import type { SliceResult } from '../engine/slice';
import type { TfBackend } from '../engine/tf-backend';

/** An image file as the page read it; its bytes are transferred to the worker. */
export interface ImageFile {
  name: string;
  bytes: ArrayBuffer;
}

export type WorkerRequest =
  | { type: 'run-slice'; requestId: number; backend: BackendRequest; releaseUrl: string }
  | {
      type: 'extract-features';
      requestId: number;
      backend: BackendRequest;
      /** URL of the backbone's release folder (backbone.json, model.json, weights.bin). */
      backboneUrl: string;
      images: ImageFile[];
    };

export type Stage =
  'loading' | 'selecting-backend' | 'running' | 'decoding' | 'loading-backbone' | 'extracting';

export interface FeaturesResult {
  backend: TfBackend;
  skipped: readonly BackendAttempt[];
  backboneId: string;
  featureDim: number;
  images: { name: string; width: number; height: number; features: Float32Array }[];
  msPerImage: number;
}

export type WorkerEvent =
  | { type: 'progress'; requestId: number; stage: Stage; done: number; total: number }
  | { type: 'slice-result'; requestId: number; result: SliceResult }
  | { type: 'features-result'; requestId: number; result: FeaturesResult }
  | { type: 'error'; requestId: number; message: string };

export type ResultEvent = Extract<WorkerEvent, { type: 'slice-result' | 'features-result' }>;

export function assertNever(value: never): never {
  throw new Error(`unhandled message ${JSON.stringify(value)}`);
}
