// The page's side of the runtime: onnxruntime-web in a worker, WebGPU when the
// browser exposes an adapter, otherwise wasm.

import * as ort from 'onnxruntime-web';
import type { Backend, RuntimeHost } from './runtime';

interface GpuLike {
  requestAdapter(): Promise<{ features: { has(name: string): boolean } } | null>;
}

function gpu(): GpuLike | undefined {
  return (globalThis.navigator as { gpu?: GpuLike } | undefined)?.gpu;
}

/**
 * Where onnxruntime-web's wasm runtime (ort-wasm-simd-threaded.jsep.mjs and
 * .wasm) is served; call before the first session. Threads need cross-origin
 * isolation (the app serves COOP/COEP headers); without it, one thread.
 */
export function configureWebRuntime({ wasmPaths }: { wasmPaths: string }): void {
  ort.env.wasm.wasmPaths = wasmPaths;
  ort.env.logLevel = 'error';
  ort.env.wasm.numThreads = globalThis.crossOriginIsolated
    ? Math.min(4, globalThis.navigator?.hardwareConcurrency ?? 1)
    : 1;
}

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

export const webHost: RuntimeHost = {
  name: 'browser',
  ort,
  preference: ['webgpu', 'wasm'],
  unavailableReason: (backend: Backend) => {
    if (backend === 'webgpu') return webGpuUnavailableReason();
    return Promise.resolve(backend === 'wasm' ? null : `${backend} is not a browser backend`);
  },
};
