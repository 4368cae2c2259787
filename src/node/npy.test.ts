import { describe, expect, it } from 'vitest';
import { decodeNpyFloat32, encodeNpyFloat32 } from './npy';

describe('.npy float32 files', () => {
  it('round-trips a matrix and aligns the data to 64 bytes as numpy does', () => {
    const data = Float32Array.from({ length: 6 }, (_, i) => i / 3);
    const bytes = encodeNpyFloat32(data, [2, 3]);
    expect((bytes.length - data.byteLength) % 64).toBe(0);
    const back = decodeNpyFloat32(bytes);
    expect(back.shape).toEqual([2, 3]);
    expect(Array.from(back.data)).toEqual(Array.from(data));
  });
});
