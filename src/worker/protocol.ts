// The typed protocol between the page and its worker. The page sends requests;
// the worker answers each with progress events and exactly one result or error.

import type { BackendRequest } from '../engine/runtime';
import type { SliceResult } from '../engine/slice';

export type WorkerRequest = {
  type: 'run-slice';
  requestId: number;
  backend: BackendRequest;
  /** URL of the release folder holding the slice (manifest.json, graph, trace). */
  releaseUrl: string;
};

export type SliceStage = 'loading' | 'selecting-backend' | 'running';

export type WorkerEvent =
  | { type: 'progress'; requestId: number; stage: SliceStage }
  | { type: 'slice-result'; requestId: number; result: SliceResult }
  | { type: 'error'; requestId: number; message: string };

export function assertNever(value: never): never {
  throw new Error(`unhandled message ${JSON.stringify(value)}`);
}
