// Decoding image files to RGBA in the page (or its worker). Alpha is kept
// unpremultiplied so that preprocessing composites it exactly as in Node.

import { MAX_IMAGE_PIXELS, tooLargeMessage, unreadableMessage } from './images';
import type { RgbaImage } from './preprocess';

export async function decodeImageInBrowser(bytes: ArrayBuffer, name: string): Promise<RgbaImage> {
  let bitmap: ImageBitmap;
  try {
    bitmap = await createImageBitmap(new Blob([bytes]), {
      premultiplyAlpha: 'none',
      colorSpaceConversion: 'none',
    });
  } catch (error) {
    throw new Error(
      unreadableMessage(name, (error as Error).message || 'the browser could not decode it'),
      {
        cause: error,
      },
    );
  }
  try {
    const { width, height } = bitmap;
    if (width * height > MAX_IMAGE_PIXELS) throw new Error(tooLargeMessage(name, width, height));
    const canvas = new OffscreenCanvas(width, height);
    const context = canvas.getContext('2d', { willReadFrequently: true });
    if (context === null) throw new Error('this browser has no 2D canvas in workers');
    context.drawImage(bitmap, 0, 0);
    return { width, height, data: context.getImageData(0, 0, width, height).data };
  } finally {
    bitmap.close();
  }
}
