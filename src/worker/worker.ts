/// <reference lib="webworker" />
import { version } from '../../package.json';
import { decodeImageInBrowser } from '../engine/web-images';
import { configureWebRuntime, webHost } from '../engine/web-host';
import { configureWebTf, webTf } from '../engine/web-tf';
import { createHandler } from './handler';
import type { WorkerEvent, WorkerRequest } from './protocol';

const scope = self as unknown as DedicatedWorkerGlobalScope;
const base = new URL(import.meta.env.BASE_URL, scope.location.href);
configureWebRuntime({ wasmPaths: new URL('ort/', base).href, appVersion: version });
configureWebTf({ wasmPaths: new URL('tfjs/', base).href });

const handle = createHandler({
  host: webHost,
  features: { decode: decodeImageInBrowser, tf: webTf },
  post: (event: WorkerEvent) => scope.postMessage(event),
});

scope.onmessage = (message: MessageEvent<WorkerRequest>) => void handle(message.data);
