// The Node side of the runtime: onnxruntime-node (native CPU, and WebGPU where
// Dawn finds an adapter, when asked for), and release files read from disk.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import type { FileSource } from './files';
import type { Backend, RuntimeHost } from './runtime';

export const nodeHost: RuntimeHost = {
  name: 'node',
  ort,
  // Native CPU first: for these graphs it is the fastest here, and `auto` never wakes Dawn
  // (which prints a Vulkan warning on machines without a GPU). WebGPU when asked for by name.
  preference: ['cpu', 'webgpu'],
  unavailableReason: (backend: Backend) => {
    const offered = ort.listSupportedBackends().some((b) => b.name === backend && b.bundled);
    return Promise.resolve(offered ? null : `onnxruntime-node has no ${backend} backend here`);
  },
};

export function directorySource(directory: string): FileSource {
  return async (name) => new Uint8Array(await readFile(join(directory, name)));
}
