import { describe, expect, it } from 'vitest';
import { errorMessage, parseBackendRequest } from './runtime';

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
