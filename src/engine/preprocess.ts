// One preprocessing function for every place that feeds the backbone (page,
// Node CLI, factory feature cache): alpha composited on white, letterboxed to
// a square of `size` (aspect kept, white padding), resampled with a triangle
// filter widened when downscaling (antialiased bilinear, as PIL's BILINEAR),
// values in [0, 1]. Pure arithmetic on RGBA bytes, so every runtime gets the
// same numbers from the same decoded pixels.

/** Decoded pixels, row-major RGBA, 8 bits per channel (ImageData's layout). */
export interface RgbaImage {
  width: number;
  height: number;
  data: Uint8Array | Uint8ClampedArray;
}

interface AxisWeights {
  start: Int32Array; // first source index per output index
  count: Int32Array; // taps per output index
  weights: Float32Array; // [outSize, maxTaps], each row sums to 1
  maxTaps: number;
}

function axisWeights(inSize: number, outSize: number): AxisWeights {
  const scale = inSize / outSize;
  const support = Math.max(1, scale); // triangle radius in source pixels
  const maxTaps = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Float32Array(outSize * maxTaps);
  for (let o = 0; o < outSize; o++) {
    const center = (o + 0.5) * scale;
    const first = Math.max(0, Math.floor(center - support));
    const last = Math.min(inSize - 1, Math.ceil(center + support) - 1);
    let total = 0;
    let taps = 0;
    for (let i = first; i <= last && taps < maxTaps; i++, taps++) {
      const w = Math.max(0, 1 - Math.abs((i + 0.5 - center) / support));
      weights[o * maxTaps + taps] = w;
      total += w;
    }
    for (let t = 0; t < taps; t++) weights[o * maxTaps + t]! /= total;
    start[o] = first;
    count[o] = taps;
  }
  return { start, count, weights, maxTaps };
}

/** Composites alpha on white; returns RGB floats in [0, 1], [height, width, 3]. */
export function rgbOnWhite(image: RgbaImage): Float32Array {
  const { width, height, data } = image;
  if (data.length !== width * height * 4) {
    throw new Error(
      `expected ${width}×${height} RGBA (${width * height * 4} bytes), got ${data.length}`,
    );
  }
  const rgb = new Float32Array(width * height * 3);
  for (let p = 0; p < width * height; p++) {
    const alpha = data[p * 4 + 3]! / 255;
    for (let c = 0; c < 3; c++) {
      rgb[p * 3 + c] = (data[p * 4 + c]! / 255) * alpha + (1 - alpha);
    }
  }
  return rgb;
}

/** Resamples RGB floats [inH, inW, 3] to [outH, outW, 3]: horizontal pass, then vertical. */
export function resampleRgb(
  rgb: Float32Array,
  inW: number,
  inH: number,
  outW: number,
  outH: number,
): Float32Array {
  const h = axisWeights(inW, outW);
  const rows = new Float32Array(inH * outW * 3);
  for (let y = 0; y < inH; y++) {
    for (let o = 0; o < outW; o++) {
      let r = 0;
      let g = 0;
      let b = 0;
      const s = h.start[o]!;
      for (let t = 0; t < h.count[o]!; t++) {
        const w = h.weights[o * h.maxTaps + t]!;
        const i = (y * inW + s + t) * 3;
        r += rgb[i]! * w;
        g += rgb[i + 1]! * w;
        b += rgb[i + 2]! * w;
      }
      const j = (y * outW + o) * 3;
      rows[j] = r;
      rows[j + 1] = g;
      rows[j + 2] = b;
    }
  }
  const v = axisWeights(inH, outH);
  const out = new Float32Array(outH * outW * 3);
  for (let o = 0; o < outH; o++) {
    const s = v.start[o]!;
    for (let t = 0; t < v.count[o]!; t++) {
      const w = v.weights[o * v.maxTaps + t]!;
      const src = (s + t) * outW * 3;
      const dst = o * outW * 3;
      for (let k = 0; k < outW * 3; k++) out[dst + k]! += rows[src + k]! * w;
    }
  }
  return out;
}

/** Where the image lands inside the square: scaled size and top-left offset. */
export function letterboxGeometry(width: number, height: number, size: number) {
  const scale = size / Math.max(width, height);
  const w = Math.max(1, Math.min(size, Math.round(width * scale)));
  const h = Math.max(1, Math.min(size, Math.round(height * scale)));
  return { w, h, left: Math.floor((size - w) / 2), top: Math.floor((size - h) / 2) };
}

/** The backbone's input for one image: [size, size, 3] floats in [0, 1], white padding. */
export function preprocessImage(image: RgbaImage, size: number): Float32Array {
  if (image.width < 1 || image.height < 1) throw new Error('the image has no pixels');
  const { w, h, left, top } = letterboxGeometry(image.width, image.height, size);
  const scaled = resampleRgb(rgbOnWhite(image), image.width, image.height, w, h);
  const out = new Float32Array(size * size * 3).fill(1);
  for (let y = 0; y < h; y++) {
    out.set(scaled.subarray(y * w * 3, (y + 1) * w * 3), ((top + y) * size + left) * 3);
  }
  return out;
}

/** Bumped whenever preprocessing changes its output, so cached features are recomputed. */
export const PREPROCESS_VERSION = 1;
