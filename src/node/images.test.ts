import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { decodeImage } from './images';

describe('decoding images in Node', () => {
  it('keeps alpha unpremultiplied', async () => {
    const png = await sharp(Buffer.from([200, 100, 50, 128]), {
      raw: { width: 1, height: 1, channels: 4 },
    })
      .png()
      .toBuffer();
    const image = await decodeImage(png, 'dot.png');
    expect(Array.from(image.data)).toEqual([200, 100, 50, 128]);
  });

  it('refuses a corrupt file, naming it', async () => {
    const png = await sharp({ create: { width: 4, height: 4, channels: 3, background: '#fff' } })
      .png()
      .toBuffer();
    await expect(decodeImage(png.subarray(0, 20), 'cut.png')).rejects.toThrow(
      /^cut\.png: not a readable image/,
    );
  });

  it('refuses an image over the pixel limit from its header, before decoding it', async () => {
    // A 10000×10000 PNG of one colour compresses to a few kilobytes.
    const png = await sharp({
      create: { width: 10_000, height: 10_000, channels: 3, background: '#000' },
    })
      .png({ compressionLevel: 9 })
      .toBuffer();
    await expect(decodeImage(png, 'huge.png')).rejects.toThrow(
      'huge.png: 10000×10000 is larger than 64 megapixels',
    );
  });
});
