import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { directorySource, nodeHost } from './node-host';
import { BackendUnavailableError, selectBackend } from './runtime';
import { loadSlice, runSlice } from './slice';

const sliceDir = fileURLToPath(new URL('../../models/release/slice/', import.meta.url));

describe('runtime slice on onnxruntime-node', () => {
  it('matches the output PyTorch recorded, on the backend it reports', async () => {
    const files = await loadSlice(directorySource(sliceDir));
    const result = await runSlice(files, 'cpu', nodeHost);
    expect(result.backend).toBe('cpu');
    expect(result.shape).toEqual(files.trace.output.shape);
    expect(result.maxAbsError).toBeLessThanOrEqual(files.manifest.max_abs_error);
    expect(result.passed).toBe(true);
  });

  it('auto runs the native cpu backend in Node, and WebGPU only when asked for by name', async () => {
    const files = await loadSlice(directorySource(sliceDir));
    const result = await runSlice(files, 'auto', nodeHost);
    expect(result.passed).toBe(true);
    expect(result.backend).toBe('cpu');
    expect(result.skipped).toEqual([]);
    const webgpu = await runSlice(files, 'webgpu', nodeHost).catch((e: unknown) => e);
    if (webgpu instanceof Error)
      expect(webgpu.message).toMatch(
        /^no backend could run the model \(asked for webgpu\): webgpu: .+/,
      );
    else expect((webgpu as { backend: string }).backend).toBe('webgpu');
  });

  it('refuses a backend the host does not offer, naming what it offers', async () => {
    const files = await loadSlice(directorySource(sliceDir));
    const error = await selectBackend('wasm', nodeHost, files.graph).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BackendUnavailableError);
    expect((error as Error).message).toContain('wasm: not offered in node (offered: cpu, webgpu)');
  });

  it('rejects a graph whose bytes differ from the manifest', async () => {
    const source = directorySource(sliceDir);
    const tampered = async (name: string) => {
      const bytes = await source(name);
      if (name === 'mlp.onnx') bytes.set([(bytes.at(-1) ?? 0) ^ 1], bytes.length - 1);
      return bytes;
    };
    await expect(loadSlice(tampered)).rejects.toThrow(
      /mlp\.onnx has sha256 [0-9a-f]{64}, the manifest says/,
    );
  });
});
