import { describe, expect, it } from 'vitest';
import { letterboxGeometry, preprocessImage, resampleRgb, type RgbaImage } from './preprocess';

function solid(width: number, height: number, rgba: [number, number, number, number]): RgbaImage {
  const data = new Uint8Array(width * height * 4);
  for (let p = 0; p < width * height; p++) data.set(rgba, p * 4);
  return { width, height, data };
}

function pixel(out: Float32Array, size: number, x: number, y: number): number[] {
  return Array.from(out.subarray((y * size + x) * 3, (y * size + x) * 3 + 3));
}

describe('backbone preprocessing', () => {
  it('composites transparent pixels on white and keeps opaque colours', () => {
    const out = preprocessImage(solid(8, 8, [255, 0, 0, 0]), 16);
    expect(pixel(out, 16, 8, 8)).toEqual([1, 1, 1]);
    const red = preprocessImage(solid(8, 8, [255, 0, 0, 255]), 16);
    expect(pixel(red, 16, 8, 8)).toEqual([1, 0, 0]);
    const half = preprocessImage(solid(8, 8, [0, 0, 0, 128]), 16);
    expect(pixel(half, 16, 3, 3)[0]).toBeCloseTo(1 - 128 / 255, 6);
  });

  it('letterboxes a wide image: centred, aspect kept, white bars above and below', () => {
    expect(letterboxGeometry(200, 100, 224)).toEqual({ w: 224, h: 112, left: 0, top: 56 });
    const out = preprocessImage(solid(200, 100, [0, 0, 0, 255]), 224);
    expect(pixel(out, 224, 100, 10)).toEqual([1, 1, 1]); // bar
    expect(pixel(out, 224, 100, 112)).toEqual([0, 0, 0]); // image
    expect(pixel(out, 224, 100, 200)).toEqual([1, 1, 1]); // bar
  });

  it('keeps values in [0, 1] and preserves a flat colour when resampling up or down', () => {
    for (const [w, h] of [
      [7, 5],
      [640, 480],
    ] as const) {
      const out = preprocessImage(solid(w, h, [51, 102, 204, 255]), 32);
      const { left, top } = letterboxGeometry(w, h, 32);
      const [r, g, b] = pixel(out, 32, left + 1, top + 1);
      expect(r).toBeCloseTo(0.2, 5);
      expect(g).toBeCloseTo(0.4, 5);
      expect(b).toBeCloseTo(0.8, 5);
      expect(Math.min(...out)).toBeGreaterThanOrEqual(0);
      expect(Math.max(...out)).toBeLessThanOrEqual(1 + 1e-6);
    }
  });

  it('antialiases when downscaling: a 1-pixel checkerboard becomes mid grey', () => {
    const size = 64;
    const rgb = new Float32Array(size * size * 3);
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++)
        rgb.fill((x + y) % 2, (y * size + x) * 3, (y * size + x) * 3 + 3);
    const out = resampleRgb(rgb, size, size, 8, 8);
    for (const v of out.subarray(3 * 9, 3 * 9 + 3)) expect(v).toBeCloseTo(0.5, 2);
  });

  it('refuses pixel data of the wrong length with a clear message', () => {
    expect(() => preprocessImage({ width: 4, height: 4, data: new Uint8Array(10) }, 8)).toThrow(
      'expected 4×4 RGBA (64 bytes), got 10',
    );
  });
});
