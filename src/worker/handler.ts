// What the worker does for each request, apart from the worker global so that
// Node tests can drive it with a real runtime host.

import { fetchSource, type FileSource } from '../engine/files';
import { errorMessage, type RuntimeHost } from '../engine/runtime';
import { loadSlice, runSlice } from '../engine/slice';
import { assertNever, type WorkerEvent, type WorkerRequest } from './protocol';

export interface HandlerContext {
  host: RuntimeHost;
  post: (event: WorkerEvent) => void;
  /** Where release files come from; defaults to fetching the request's URL. */
  source?: (releaseUrl: string) => FileSource;
}

export async function handleRequest(
  request: WorkerRequest,
  context: HandlerContext,
): Promise<void> {
  const { host, post } = context;
  const { requestId } = request;
  try {
    switch (request.type) {
      case 'run-slice': {
        post({ type: 'progress', requestId, stage: 'loading' });
        const source = (context.source ?? fetchSource)(request.releaseUrl);
        const files = await loadSlice(source);
        post({ type: 'progress', requestId, stage: 'selecting-backend' });
        const result = await runSlice(files, request.backend, host);
        post({ type: 'slice-result', requestId, result });
        return;
      }
      default:
        assertNever(request.type);
    }
  } catch (error) {
    post({ type: 'error', requestId, message: errorMessage(error) });
  }
}

/**
 * Handles requests one at a time, in arrival order. onnxruntime-web fails
 * ("Session already started", "Session mismatch") when sessions are created
 * or run concurrently, so a second request waits for the first.
 */
export function createSerialHandler(
  context: HandlerContext,
): (request: WorkerRequest) => Promise<void> {
  let tail: Promise<void> = Promise.resolve();
  return (request) => {
    tail = tail.then(() => handleRequest(request, context));
    return tail;
  };
}
