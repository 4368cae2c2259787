// The page's handle on the worker: one promise per request, progress by callback.

import type { Progress } from '../engine/progress';
import type { ResultEvent, WorkerEvent, WorkerRequest } from './protocol';

export type { Progress };

type RequestBody = WorkerRequest extends infer R
  ? R extends WorkerRequest
    ? Omit<R, 'requestId'>
    : never
  : never;

type ResultFor<R extends RequestBody> = R['type'] extends 'run-slice'
  ? Extract<ResultEvent, { type: 'slice-result' }>['result']
  : R['type'] extends 'measure-backends'
    ? Extract<ResultEvent, { type: 'backend-speeds-result' }>['result']
    : R['type'] extends 'extract-features'
      ? Extract<ResultEvent, { type: 'features-result' }>['result']
      : R['type'] extends 'check-generator'
        ? Extract<ResultEvent, { type: 'generator-check-result' }>['result']
        : R['type'] extends 'fine-tune'
          ? Extract<ResultEvent, { type: 'fine-tune-result' }>['result']
          : R['type'] extends 'export-classifier'
            ? Extract<ResultEvent, { type: 'classifier-result' }>['result']
            : Extract<ResultEvent, { type: 'generate-result' }>['result'];

interface Pending {
  resolve: (event: ResultEvent) => void;
  reject: (error: Error) => void;
  onProgress: (progress: Progress) => void;
}

export interface WorkerClient {
  request<R extends Exclude<RequestBody, { type: 'cancel' }>>(
    body: R,
    onProgress?: (progress: Progress) => void,
    transfer?: Transferable[],
    /** Aborting it asks the worker to stop this request. */
    signal?: AbortSignal,
  ): Promise<ResultFor<R>>;
}

export function createWorkerClient(worker: Worker): WorkerClient {
  const pending = new Map<number, Pending>();
  let nextId = 1;
  worker.onmessage = (message: MessageEvent<WorkerEvent>) => {
    const event = message.data;
    const entry = pending.get(event.requestId);
    if (entry === undefined) return;
    switch (event.type) {
      case 'progress': {
        const { stage, done, total, backend, measured } = event;
        entry.onProgress({
          stage,
          done,
          total,
          ...(backend !== undefined ? { backend } : {}),
          ...(measured !== undefined ? { measured } : {}),
        });
        break;
      }
      case 'error':
        pending.delete(event.requestId);
        entry.reject(new Error(event.message));
        break;
      default:
        pending.delete(event.requestId);
        entry.resolve(event);
    }
  };
  worker.onerror = (event) => {
    const error = new Error(`the worker stopped: ${event.message || 'failed to load'}`);
    for (const entry of pending.values()) entry.reject(error);
    pending.clear();
  };
  return {
    request(body, onProgress = () => {}, transfer = [], signal) {
      const requestId = nextId++;
      signal?.addEventListener('abort', () =>
        worker.postMessage({
          type: 'cancel',
          requestId: nextId++,
          target: requestId,
        } as WorkerRequest),
      );
      return new Promise((resolve, reject) => {
        pending.set(requestId, {
          resolve: (event) => resolve(event.result as never),
          reject,
          onProgress,
        });
        worker.postMessage({ ...body, requestId } as WorkerRequest, transfer);
      });
    },
  };
}

/** The engine's worker, started once `after` settles (the offline cache's start). */
export function startWorker(after: Promise<unknown> = Promise.resolve()): WorkerClient {
  const client = after.then(() =>
    createWorkerClient(
      new Worker(new URL('./worker.ts', import.meta.url), { type: 'module', name: 'd2nwg-engine' }),
    ),
  );
  return {
    request: (body, onProgress, transfer, signal) =>
      client.then((c) => c.request(body, onProgress, transfer, signal)),
  };
}
