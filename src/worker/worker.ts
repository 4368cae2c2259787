/// <reference lib="webworker" />
import { configureWebRuntime, webHost } from '../engine/web-host';
import { createSerialHandler } from './handler';
import type { WorkerEvent, WorkerRequest } from './protocol';

const scope = self as unknown as DedicatedWorkerGlobalScope;
configureWebRuntime({
  wasmPaths: new URL(`${import.meta.env.BASE_URL}ort/`, scope.location.href).href,
});

const handle = createSerialHandler({
  host: webHost,
  post: (event: WorkerEvent) => scope.postMessage(event),
});

scope.onmessage = (message: MessageEvent<WorkerRequest>) => void handle(message.data);
