// The benchmarks' images: a class folder drawn from a seed, so every machine
// measures the same pictures without shipping any (bench.ts, bench-browser.ts).

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { Mulberry32 } from '../engine/rng';

/** A class folder of seeded images: each class a colour and a shape, on noisy backgrounds. */
export async function drawFolder(
  root: string,
  sizes: { classes: number; images: number },
  seed: number,
): Promise<void> {
  const rng = new Mulberry32(seed);
  const size = 64;
  for (let c = 0; c < sizes.classes; c++) {
    const dir = join(root, `class-${String(c).padStart(2, '0')}`);
    mkdirSync(dir, { recursive: true });
    const hue = [(c * 97) % 256, (c * 57 + 80) % 256, (c * 31 + 160) % 256];
    for (let k = 0; k < sizes.images; k++) {
      const pixels = Buffer.alloc(size * size * 3);
      const cx = 16 + rng.uniform() * 32;
      const cy = 16 + rng.uniform() * 32;
      const r = 8 + rng.uniform() * 10;
      for (let y = 0; y < size; y++)
        for (let x = 0; x < size; x++) {
          const inside =
            c % 2 === 0
              ? (x - cx) ** 2 + (y - cy) ** 2 < r * r
              : Math.abs(x - cx) < r && Math.abs(y - cy) < r;
          for (let ch = 0; ch < 3; ch++) {
            const base = inside ? hue[ch]! : 200;
            pixels[(y * size + x) * 3 + ch] = Math.max(0, Math.min(255, base + 30 * rng.normal()));
          }
        }
      await sharp(pixels, { raw: { width: size, height: size, channels: 3 } })
        .png()
        .toFile(join(dir, `${k}.png`));
    }
  }
}
