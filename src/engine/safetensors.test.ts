import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { decodeSafetensors, encodeSafetensors } from './safetensors';

const reference = fileURLToPath(
  new URL('../../models/release/zoo/reference/heads.safetensors', import.meta.url),
);

describe('safetensors', () => {
  it('round-trips named float32 tensors and metadata', () => {
    const weight = Float32Array.from({ length: 6 }, (_, i) => i / 3);
    const bytes = encodeSafetensors(
      {
        weight: { shape: [2, 3], data: weight },
        bias: { shape: [2], data: Float32Array.of(-1, 2.5) },
      },
      { classes: '["a","b"]' },
    );
    const { tensors, metadata } = decodeSafetensors(bytes);
    expect(tensors.weight!.shape).toEqual([2, 3]);
    expect(Array.from(tensors.weight!.data)).toEqual(Array.from(weight));
    expect(Array.from(tensors.bias!.data)).toEqual([-1, 2.5]);
    expect(metadata.classes).toBe('["a","b"]');
  });

  it('reads the files the factory writes (the zoo reference heads)', () => {
    const { tensors } = decodeSafetensors(new Uint8Array(readFileSync(reference)));
    const weights = Object.entries(tensors).filter(([name]) => name.endsWith('/weight'));
    expect(weights.length).toBeGreaterThan(0);
    for (const [, t] of weights) {
      expect(t.shape[1]).toBe(1792);
      expect(t.data.length).toBe(t.shape[0]! * 1792);
      expect(t.data.every(Number.isFinite)).toBe(true);
    }
  });

  it('refuses shapes that do not match the data, and files that are not safetensors', () => {
    expect(() => encodeSafetensors({ w: { shape: [3], data: new Float32Array(2) } })).toThrow(
      /shape/,
    );
    expect(() => decodeSafetensors(new Uint8Array([1, 2, 3]))).toThrow(/not a safetensors file/);
  });
});
