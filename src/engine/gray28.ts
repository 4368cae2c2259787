// The cnn family's input: 28×28 grayscale, ink high and background 0 (as
// MNIST), the twin of models/d2nwg/cnn_zoo.py `to_grayscale_28`, to the
// pixel: alpha composited on white and rounded, PIL's "L" luma in integer
// arithmetic, the image centred on a square of its background colour, then
// PIL's BILINEAR resize in its own fixed-point arithmetic (horizontal pass,
// rounded to 8 bits, then vertical), inverted when the background is light.

import type { RgbaImage } from './preprocess';

export const GRAY_SIDE = 28;
const PRECISION_BITS = 22; // PIL's Resample.c for 8-bit images: 32 − 8 − 2

/** 8-bit luma [height × width]: alpha on white, then L = (19595 R + 38470 G + 7471 B + 2¹⁵) >> 16. */
export function luma(image: RgbaImage): Uint8Array {
  const { width, height, data } = image;
  const out = new Uint8Array(width * height);
  for (let p = 0; p < width * height; p++) {
    const a = data[p * 4 + 3]! / 255;
    const [r, g, b] = [0, 1, 2].map((c) => Math.round(data[p * 4 + c]! * a + 255 * (1 - a)));
    out[p] = (r! * 19595 + g! * 38470 + b! * 7471 + 0x8000) >>> 16;
  }
  return out;
}

/** Whether the outermost pixel ring is mostly dark: numpy's median of [top, bottom, left, right] < 128. */
export function backgroundIsDark(pixels: Uint8Array, width: number, height: number): boolean {
  const ring: number[] = [];
  for (let x = 0; x < width; x++) ring.push(pixels[x]!);
  for (let x = 0; x < width; x++) ring.push(pixels[(height - 1) * width + x]!);
  for (let y = 0; y < height; y++) ring.push(pixels[y * width]!);
  for (let y = 0; y < height; y++) ring.push(pixels[y * width + width - 1]!);
  ring.sort((a, b) => a - b);
  const mid = ring.length / 2;
  const median = ring.length % 2 ? ring[Math.floor(mid)]! : (ring[mid - 1]! + ring[mid]!) / 2;
  return median < 128;
}

/** PIL's precompute_coeffs + normalize_coeffs_8bpc for the bilinear (triangle) filter. */
function coefficients(inSize: number, outSize: number) {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filterScale; // bilinear support 1.0, widened when shrinking
  const taps = Math.ceil(support) * 2 + 1;
  const bounds: [number, number][] = [];
  const weights = new Float64Array(outSize * taps);
  for (let o = 0; o < outSize; o++) {
    const center = (o + 0.5) * scale;
    const first = Math.max(0, Math.trunc(center - support + 0.5));
    const count = Math.min(inSize, Math.trunc(center + support + 0.5)) - first;
    let total = 0;
    const raw: number[] = [];
    for (let x = 0; x < count; x++) {
      const w = Math.max(0, 1 - Math.abs((x + first - center + 0.5) / filterScale));
      raw.push(w);
      total += w;
    }
    raw.forEach((w, x) => {
      const k = total !== 0 ? w / total : 0;
      weights[o * taps + x] =
        k < 0
          ? Math.trunc(-0.5 + k * 2 ** PRECISION_BITS)
          : Math.trunc(0.5 + k * 2 ** PRECISION_BITS);
    });
    bounds.push([first, count]);
  }
  return { bounds, weights, taps };
}

function clip8(accumulated: number): number {
  return Math.min(255, Math.max(0, Math.floor(accumulated / 2 ** PRECISION_BITS)));
}

/** PIL Image.resize(BILINEAR) of an 8-bit single-channel image (horizontal pass first). */
export function resizeGray(
  pixels: Uint8Array,
  inW: number,
  inH: number,
  outW: number,
  outH: number,
): Uint8Array {
  let current = pixels;
  let width = inW;
  if (outW !== inW) {
    const { bounds, weights, taps } = coefficients(inW, outW);
    const next = new Uint8Array(outW * inH);
    for (let y = 0; y < inH; y++)
      for (let o = 0; o < outW; o++) {
        const [first, count] = bounds[o]!;
        let ss = 2 ** (PRECISION_BITS - 1);
        for (let x = 0; x < count; x++)
          ss += current[y * width + first + x]! * weights[o * taps + x]!;
        next[y * outW + o] = clip8(ss);
      }
    current = next;
    width = outW;
  }
  if (outH !== inH) {
    const { bounds, weights, taps } = coefficients(inH, outH);
    const next = new Uint8Array(width * outH);
    for (let o = 0; o < outH; o++) {
      const [first, count] = bounds[o]!;
      for (let x = 0; x < width; x++) {
        let ss = 2 ** (PRECISION_BITS - 1);
        for (let y = 0; y < count; y++)
          ss += current[(first + y) * width + x]! * weights[o * taps + y]!;
        next[o * width + x] = clip8(ss);
      }
    }
    current = next;
  }
  return current;
}

/**
 * One image as the CNN sees it: [28 × 28] floats in [0, 1], ink high. `darkBackground`
 * undefined: judged from this image's border (a folder decides once, by majority: see
 * `folderPolarity`).
 */
export function toGray28(image: RgbaImage, darkBackground?: boolean): Float32Array {
  if (image.width < 1 || image.height < 1) throw new Error('the image has no pixels');
  const l = luma(image);
  const dark = darkBackground ?? backgroundIsDark(l, image.width, image.height);
  const side = Math.max(image.width, image.height);
  const square = new Uint8Array(side * side).fill(dark ? 0 : 255);
  const left = Math.floor((side - image.width) / 2);
  const top = Math.floor((side - image.height) / 2);
  for (let y = 0; y < image.height; y++)
    square.set(l.subarray(y * image.width, (y + 1) * image.width), (top + y) * side + left);
  const small = resizeGray(square, side, side, GRAY_SIDE, GRAY_SIDE);
  return Float32Array.from(small, (v) => (dark ? v : 255 - v) / 255);
}

/** The polarity a set of images is converted with: dark background when most of their borders are dark. */
export function folderPolarity(images: readonly RgbaImage[]): boolean {
  const dark = images.filter((im) => backgroundIsDark(luma(im), im.width, im.height)).length;
  return dark * 2 > images.length;
}
