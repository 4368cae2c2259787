// Shared limits and messages for decoded images, in the page and in Node.

/** The image files a class folder may hold (GIF: its first frame). */
export const IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg', '.webp', '.bmp', '.gif'] as const;

/** Larger images are refused with a clear message rather than exhausting memory. */
export const MAX_IMAGE_PIXELS = 64 * 1024 * 1024;

export function tooLargeMessage(name: string, width: number, height: number): string {
  return `${name}: ${width}×${height} is larger than ${MAX_IMAGE_PIXELS / 1024 / 1024} megapixels`;
}

export function unreadableMessage(name: string, reason: string): string {
  return `${name}: not a readable image (${reason})`;
}
