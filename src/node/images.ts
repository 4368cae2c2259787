// Decoding image files to RGBA in Node (sharp / libvips). PNG decodes to the
// same pixels as in the browser; lossy formats may differ in the last bit.

import sharp from 'sharp';
import { MAX_IMAGE_PIXELS, tooLargeMessage, unreadableMessage } from '../engine/images';
import type { RgbaImage } from '../engine/preprocess';

export async function decodeImage(bytes: Uint8Array, name: string): Promise<RgbaImage> {
  let width: number;
  let height: number;
  try {
    // The header alone: a huge image is refused before its pixels are decoded.
    ({ width, height } = await sharp(bytes, { limitInputPixels: false }).metadata());
  } catch (error) {
    throw new Error(unreadableMessage(name, (error as Error).message), { cause: error });
  }
  if (width * height > MAX_IMAGE_PIXELS) throw new Error(tooLargeMessage(name, width, height));
  try {
    const { data, info } = await sharp(bytes, { limitInputPixels: MAX_IMAGE_PIXELS, pages: 1 })
      .ensureAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
    return {
      width: info.width,
      height: info.height,
      data: new Uint8Array(data.buffer, data.byteOffset, data.length),
    };
  } catch (error) {
    throw new Error(unreadableMessage(name, (error as Error).message), { cause: error });
  }
}
