import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { decodeImage } from '../node/images';
import { folderPolarity, toGray28 } from './gray28';
import { array, boolean, integer, nullable, object, parse, string } from './schema';

const fixtures = fileURLToPath(new URL('../../models/fixtures/', import.meta.url));
const traceSchema = array(
  object({ file: string, dark_background: nullable(boolean), pixels: array(integer) }),
);

async function image(name: string) {
  return decodeImage(new Uint8Array(await readFile(`${fixtures}/images/${name}`)), name);
}

describe('28×28 grayscale conversion for the cnn family', () => {
  it('gives the factory’s pixels for every fixture image and polarity', async () => {
    const trace = parse(
      traceSchema,
      JSON.parse(await readFile(`${fixtures}/gray28-trace.json`, 'utf8')),
      'gray28-trace.json',
    );
    expect(trace.length).toBeGreaterThanOrEqual(15);
    for (const entry of trace) {
      const ours = toGray28(await image(entry.file), entry.dark_background ?? undefined);
      const diff = Math.max(
        ...Array.from(ours, (v, i) => Math.abs(Math.round(v * 255) - entry.pixels[i]!)),
      );
      expect(diff, `${entry.file} dark=${entry.dark_background}`).toBe(0);
    }
  });

  it('keeps ink high: a dark glyph on white comes out bright on black', async () => {
    const glyph = await image('glyph-rgba.png');
    const pixels = toGray28(glyph);
    expect(pixels[0]).toBe(0); // corner: background
    expect(Math.max(...pixels)).toBeGreaterThan(0.5);
    expect(folderPolarity([glyph])).toBe(false);
  });
});
