import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { directorySource, nodeHost } from './node-host';
import { BackendUnavailableError, describeBackend, selectBackend } from './runtime';
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

  it('auto tries WebGPU first and reports the backend that ran', async () => {
    const files = await loadSlice(directorySource(sliceDir));
    const result = await runSlice(files, 'auto', nodeHost);
    expect(result.passed).toBe(true);
    if (result.backend === 'cpu') {
      // No adapter here (these machines have no GPU): WebGPU was tried first and its failure kept.
      expect(result.skipped.map((a) => a.backend)).toEqual(['webgpu']);
      expect(result.skipped[0]?.error).not.toBe('');
      expect(describeBackend(result)).toMatch(/^cpu \(webgpu skipped: .+\)$/);
    } else {
      expect(result.backend).toBe('webgpu');
      expect(result.skipped).toEqual([]);
    }
  });

  it('refuses a backend the host does not offer, naming what it offers', async () => {
    const files = await loadSlice(directorySource(sliceDir));
    const error = await selectBackend('wasm', nodeHost, files.graph).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BackendUnavailableError);
    expect((error as Error).message).toContain('wasm: not offered in node (offered: webgpu, cpu)');
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
