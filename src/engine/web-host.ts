// The page's side of the runtime: onnxruntime-web in a worker, WebGPU when the
// browser exposes an adapter, otherwise wasm.

import * as ort from 'onnxruntime-web';
import { probeOrder, type AutoProbe } from './backend-probe';
import type { Backend, RuntimeHost } from './runtime';
import { indexedDbVerdicts } from './web-verdicts';

interface AdapterInfoLike {
  vendor?: string;
  architecture?: string;
  device?: string;
  description?: string;
  isFallbackAdapter?: boolean;
}

interface GpuLike {
  requestAdapter(): Promise<{
    features: { has(name: string): boolean };
    info?: AdapterInfoLike;
    isFallbackAdapter?: boolean;
  } | null>;
}

function gpu(): GpuLike | undefined {
  return (globalThis.navigator as { gpu?: GpuLike } | undefined)?.gpu;
}

/**
 * Where onnxruntime-web's wasm runtime (ort-wasm-simd-threaded.jsep.mjs and
 * .wasm) is served; call before the first session. Threads need cross-origin
 * isolation (the app serves COOP/COEP headers); without it, one thread. On two
 * cores or fewer, one thread too: there the worker's own thread and the browser
 * share the cores with onnxruntime's, and 8 head samples × 50 steps took
 * 3.0–4.1 s with 2 threads against 1.7–2.2 s with one (fp32, 2 classes,
 * Chromium on this project's 2-core machines).
 */
export function configureWebRuntime({
  wasmPaths,
  appVersion,
}: {
  wasmPaths: string;
  /** Part of the key a measured backend choice is kept under: a new app measures again. */
  appVersion: string;
}): void {
  version = appVersion;
  ort.env.wasm.wasmPaths = wasmPaths;
  ort.env.logLevel = 'error';
  const cores = globalThis.navigator?.hardwareConcurrency ?? 1;
  ort.env.wasm.numThreads = globalThis.crossOriginIsolated && cores > 2 ? Math.min(4, cores) : 1;
}

let version = 'unknown';

export async function webGpuUnavailableReason(): Promise<string | null> {
  const api = gpu();
  if (api === undefined) return 'this browser has no WebGPU (navigator.gpu is missing)';
  try {
    const adapter = await api.requestAdapter();
    return adapter === null ? 'this browser exposes no WebGPU adapter' : null;
  } catch (error) {
    return `WebGPU adapter request failed: ${String(error)}`;
  }
}

/**
 * Why `auto` should pass over this browser's WebGPU adapter: a fallback or
 * software adapter (SwiftShader, llvmpipe) runs these graphs tens of times
 * slower than wasm (issue 16: 22 min against 25 s). Null for a real GPU.
 */
export async function softwareWebGpuReason(): Promise<string | null> {
  try {
    const adapter = await gpu()?.requestAdapter();
    if (adapter === null || adapter === undefined) return null;
    const info = adapter.info ?? {};
    if (adapter.isFallbackAdapter === true || info.isFallbackAdapter === true)
      return 'the WebGPU adapter is a fallback (software) adapter; wasm is faster';
    const described = [info.vendor, info.architecture, info.device, info.description]
      .filter((part) => part !== undefined && part !== '')
      .join(' ');
    if (/swiftshader|llvmpipe|lavapipe|softpipe|software|basic render/i.test(described))
      return `the WebGPU adapter is software (${described}); wasm is faster`;
    return null;
  } catch {
    return null;
  }
}

/** The adapter in its own words ("nvidia ampere"), or a note that it gives none. */
async function adapterDescription(): Promise<string> {
  try {
    const info = (await gpu()?.requestAdapter())?.info ?? {};
    const described = [info.vendor, info.architecture, info.device, info.description]
      .filter((part) => part !== undefined && part !== '')
      .join(' ');
    return described === '' ? 'an adapter that does not describe itself' : described;
  } catch {
    return 'no adapter';
  }
}

/**
 * `auto` times the backends it cannot rule out once per adapter, onnxruntime-web
 * and app version, and keeps the verdict in IndexedDB. Any adapter that is not
 * a fallback one is measured, not only one that does not describe itself: the
 * generator's graphs are small, so even a real GPU's per-call cost can lose to
 * wasm, and one probe (0.2 s for wasm on this project's 2-core machines, 2–3 s
 * more for a SwiftShader-like adapter; once) is cheaper than a wrong guess.
 */
export const webAutoProbe: AutoProbe = {
  key: async () =>
    `${await adapterDescription()} | onnxruntime-web ${ort.env.versions.web ?? '?'} | app ${version}`,
  store: indexedDbVerdicts,
};

export const webHost: RuntimeHost = {
  name: 'browser',
  ort,
  preference: ['webgpu', 'wasm'],
  unavailableReason: (backend: Backend) => {
    if (backend === 'webgpu') return webGpuUnavailableReason();
    return Promise.resolve(backend === 'wasm' ? null : `${backend} is not a browser backend`);
  },
  autoSkipReason: (backend: Backend) =>
    backend === 'webgpu' ? softwareWebGpuReason() : Promise.resolve(null),
  autoOrder: (viable) => probeOrder(webHost, viable, webAutoProbe),
};
