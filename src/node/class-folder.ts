// A dataset as people hand it over: one sub-folder per class, images inside.
// Class order is the sorted sub-folder names, written into every output.

import { readdirSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';

import { IMAGE_EXTENSIONS } from '../engine/images';

export { IMAGE_EXTENSIONS };

export interface ClassFolder {
  root: string;
  classes: string[];
  /** Per class (in `classes` order): image paths, sorted. */
  images: string[][];
  /** Files that are not images we read (named relative to root), skipped. */
  skipped: string[];
}

export class FolderError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FolderError';
  }
}

/** Reads a class folder; throws FolderError with a message a person can act on. */
export function readClassFolder(root: string, { minClasses = 2 } = {}): ClassFolder {
  let entries: string[];
  try {
    if (!statSync(root).isDirectory())
      throw new FolderError(`${root} is a file, not a folder of class folders`);
    entries = readdirSync(root).sort();
  } catch (error) {
    if (error instanceof FolderError) throw error;
    throw new FolderError(`cannot read folder ${root}: ${(error as Error).message}`);
  }
  const classes: string[] = [];
  const images: string[][] = [];
  const skipped: string[] = [];
  for (const name of entries) {
    if (name.startsWith('.')) continue;
    const path = join(root, name);
    if (!statSync(path).isDirectory()) {
      skipped.push(name);
      continue;
    }
    const files: string[] = [];
    for (const file of readdirSync(path).sort()) {
      if (file.startsWith('.')) continue;
      const ext = extname(file).toLowerCase();
      if (
        (IMAGE_EXTENSIONS as readonly string[]).includes(ext) &&
        statSync(join(path, file)).isFile()
      ) {
        files.push(join(path, file));
      } else {
        skipped.push(join(name, file));
      }
    }
    if (files.length === 0) {
      throw new FolderError(
        `class folder "${name}" has no images (${IMAGE_EXTENSIONS.join(', ')}); add some or remove the folder`,
      );
    }
    classes.push(name);
    images.push(files);
  }
  const looseImages = skipped.filter((f) =>
    (IMAGE_EXTENSIONS as readonly string[]).includes(extname(f).toLowerCase()),
  );
  if (classes.length === 0 && looseImages.length > 0) {
    throw new FolderError(
      `${root} holds ${looseImages.length} images but no class folders; put each class's images in its own sub-folder`,
    );
  }
  if (classes.length < minClasses) {
    throw new FolderError(
      `${root} has ${classes.length} class folder${classes.length === 1 ? '' : 's'}; ` +
        `a classifier needs at least ${minClasses} (one sub-folder of images per class)`,
    );
  }
  return { root, classes, images, skipped };
}
