// tfjs in the page's worker: WebGPU when the browser exposes an adapter, else wasm.

import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-webgpu';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import type { BackendRequest } from './runtime';
import { selectTfBackend, type SelectedTfBackend, type TfBackend } from './tf-backend';
import { softwareWebGpuReason, webGpuUnavailableReason } from './web-host';

/** Where tfjs-backend-wasm's .wasm files are served; call before the first use. */
export function configureWebTf({ wasmPaths }: { wasmPaths: string }): void {
  setWasmPaths(wasmPaths);
  // tfjs-backend-wasm's thread workers do not survive bundling (their blob
  // script references minified names); run its SIMD build on one thread.
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
}

export async function webTf(
  request: BackendRequest,
): Promise<{ tf: typeof tf; selected: SelectedTfBackend }> {
  const order: TfBackend[] =
    request === 'auto' ? ['webgpu', 'wasm'] : [request === 'cpu' ? 'cpu' : request];
  const skipped = [];
  const candidates: TfBackend[] = [];
  for (const backend of order) {
    const reason =
      backend !== 'webgpu'
        ? null
        : ((await webGpuUnavailableReason()) ??
          (request === 'auto' ? await softwareWebGpuReason() : null));
    if (reason === null) candidates.push(backend);
    else skipped.push({ backend, error: reason } as const);
  }
  if (candidates.length === 0) {
    throw new Error(
      `no tfjs backend could run (asked for ${request}): ${skipped.map((s) => `${s.backend}: ${s.error}`).join('; ')}`,
    );
  }
  const selected = await selectTfBackend(tf, candidates);
  return {
    tf,
    selected: { backend: selected.backend, skipped: [...skipped, ...selected.skipped] },
  };
}
