// The page's handle on the worker: one promise per request, progress by callback.

import type { BackendRequest } from '../engine/runtime';
import type { SliceResult } from '../engine/slice';
import type { SliceStage, WorkerEvent, WorkerRequest } from './protocol';

interface Pending {
  resolve: (result: SliceResult) => void;
  reject: (error: Error) => void;
  onStage: (stage: SliceStage) => void;
}

export interface WorkerClient {
  runSlice(
    backend: BackendRequest,
    releaseUrl: string,
    onStage: (stage: SliceStage) => void,
  ): Promise<SliceResult>;
}

export function createWorkerClient(worker: Worker): WorkerClient {
  const pending = new Map<number, Pending>();
  let nextId = 1;
  worker.onmessage = (message: MessageEvent<WorkerEvent>) => {
    const event = message.data;
    const entry = pending.get(event.requestId);
    if (entry === undefined) return;
    switch (event.type) {
      case 'progress':
        entry.onStage(event.stage);
        break;
      case 'slice-result':
        pending.delete(event.requestId);
        entry.resolve(event.result);
        break;
      case 'error':
        pending.delete(event.requestId);
        entry.reject(new Error(event.message));
        break;
    }
  };
  worker.onerror = (event) => {
    const error = new Error(`the worker stopped: ${event.message || 'failed to load'}`);
    for (const entry of pending.values()) entry.reject(error);
    pending.clear();
  };
  return {
    runSlice(backend, releaseUrl, onStage) {
      const requestId = nextId++;
      const request: WorkerRequest = { type: 'run-slice', requestId, backend, releaseUrl };
      return new Promise<SliceResult>((resolve, reject) => {
        pending.set(requestId, { resolve, reject, onStage });
        worker.postMessage(request);
      });
    },
  };
}

export function startWorker(): WorkerClient {
  return createWorkerClient(
    new Worker(new URL('./worker.ts', import.meta.url), { type: 'module', name: 'd2nwg-engine' }),
  );
}
