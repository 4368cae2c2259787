import { describe, expect, it } from 'vitest';
import type { InferenceSession } from 'onnxruntime-common';
import {
  describeBackend,
  errorMessage,
  parseBackendRequest,
  selectBackend,
  type OrtPackage,
  type RuntimeHost,
} from './runtime';

describe('backend requests', () => {
  it('accepts auto and every backend name', () => {
    for (const name of ['auto', 'webgpu', 'wasm', 'cpu'])
      expect(parseBackendRequest(name)).toBe(name);
  });

  it('names the allowed values for an unknown backend', () => {
    expect(() => parseBackendRequest('webgl')).toThrow(
      'unknown backend "webgl"; choose one of auto, webgpu, wasm, cpu',
    );
  });
});

describe('errorMessage', () => {
  it('turns a native ONNX Runtime failure into one readable line', () => {
    const native = new Error(
      '/onnxruntime_src/onnxruntime/core/providers/webgpu/webgpu_context.cc:136 ' +
        'onnxruntime::webgpu::WebGpuContext::Initialize(const Config&)::<lambda()> ' +
        'adapter_result.status == wgpu::RequestAdapterStatus::Success was false. ' +
        'Failed to get a WebGPU adapter: No supported adapters\n',
    );
    expect(errorMessage(native)).toBe('Failed to get a WebGPU adapter: No supported adapters');
  });

  it('keeps ordinary messages and non-Error values', () => {
    expect(errorMessage(new Error('no adapter'))).toBe('no adapter');
    expect(errorMessage('plain  text\n')).toBe('plain text');
  });
});

describe('auto passes over a backend that works but is slow here', () => {
  // A host whose "webgpu" opens sessions but is a software adapter.
  const opened: string[] = [];
  const host: RuntimeHost = {
    name: 'browser',
    preference: ['webgpu', 'wasm'],
    ort: {
      InferenceSession: {
        create: (_model, options) => {
          opened.push(String(options?.executionProviders?.[0]));
          return Promise.resolve({} as InferenceSession);
        },
      },
      Tensor: {} as OrtPackage['Tensor'],
    },
    unavailableReason: () => Promise.resolve(null),
    autoSkipReason: (backend) =>
      Promise.resolve(backend === 'webgpu' ? 'the WebGPU adapter is software' : null),
  };

  it('auto takes wasm and says why; webgpu asked for by name still runs there', async () => {
    const auto = await selectBackend('auto', host, new Uint8Array());
    expect(describeBackend(auto.selected)).toBe(
      'wasm (webgpu skipped: the WebGPU adapter is software)',
    );
    const named = await selectBackend('webgpu', host, new Uint8Array());
    expect(named.selected.backend).toBe('webgpu');
    expect(opened).toEqual(['wasm', 'webgpu']);
  });
});
