// A dataset as the page receives it: files from a folder picker, a dropped
// folder or a dropped zip, grouped into classes by their top-level sub-folder,
// each file checked (empty, or not the image its name says) as soon as it is read.

import { unzipSync } from 'fflate';
import { IMAGE_EXTENSIONS } from '../engine/images';

/** A file and where it sat inside the chosen folder ("root/class/name.png"). */
export interface PickedFile {
  file: File;
  path: string;
}

export interface PageDataset {
  classes: { name: string; files: File[] }[];
  /** Files left out, and why (in the order met). */
  skipped: string[];
  /** Folders inside class folders ("cats/kittens"): their images are not used. */
  nestedFolders: string[];
}

function isImage(name: string): boolean {
  const lower = name.toLowerCase();
  return IMAGE_EXTENSIONS.some((ext) => lower.endsWith(ext));
}

/**
 * Groups files into classes: one per top-level sub-folder of the chosen folder,
 * sorted by name (the order of the generated rows, as in the CLI). Files at the
 * top level, in folders nested inside a class folder, hidden files and
 * non-images are skipped with a reason.
 */
export function groupByClass(files: readonly PickedFile[]): PageDataset {
  const classes = new Map<string, File[]>();
  const skipped: string[] = [];
  const nested = new Set<string>();
  for (const { file, path } of files) {
    const parts = path.split('/').filter((p) => p.length > 0);
    const name = parts.at(-1) ?? file.name;
    if (name.startsWith('.')) continue;
    if (parts.length < 3) {
      skipped.push(`${path}: not inside a class folder`);
      continue;
    }
    if (parts.length > 3) {
      const folder = parts.slice(1, -1).join('/');
      nested.add(folder);
      skipped.push(
        `${path}: in the nested folder ${folder}; only images directly inside a class folder are used`,
      );
      continue;
    }
    if (!isImage(name)) {
      skipped.push(`${path}: not an image (${IMAGE_EXTENSIONS.join(', ')})`);
      continue;
    }
    const cls = parts[1]!;
    classes.set(cls, [...(classes.get(cls) ?? []), file]);
  }
  const sorted = [...classes.keys()].sort();
  return {
    classes: sorted.map((name) => ({ name, files: classes.get(name)! })),
    skipped,
    nestedFolders: [...nested].sort(),
  };
}

/** The first bytes of each image format we read, by file extension. */
const SIGNATURES: Record<string, (b: Uint8Array) => boolean> = {
  '.png': (b) => [0x89, 0x50, 0x4e, 0x47].every((v, i) => b[i] === v),
  '.jpg': (b) => b[0] === 0xff && b[1] === 0xd8,
  '.jpeg': (b) => b[0] === 0xff && b[1] === 0xd8,
  '.gif': (b) => String.fromCharCode(...b.subarray(0, 4)) === 'GIF8',
  '.bmp': (b) => b[0] === 0x42 && b[1] === 0x4d,
  '.webp': (b) =>
    String.fromCharCode(...b.subarray(0, 4)) === 'RIFF' &&
    String.fromCharCode(...b.subarray(8, 12)) === 'WEBP',
};

/** Why a file cannot be an image, from its size and first bytes; null when it may be one. */
export async function imageFileProblem(file: File): Promise<string | null> {
  if (file.size === 0) return 'an empty file (0 bytes)';
  const ext = file.name.slice(file.name.lastIndexOf('.')).toLowerCase();
  const head = new Uint8Array(await file.slice(0, 16).arrayBuffer());
  const matches = SIGNATURES[ext];
  if (matches !== undefined && !matches(head)) {
    const actual = Object.entries(SIGNATURES).find(([, test]) => test(head))?.[0];
    return actual === undefined
      ? `not a ${ext.slice(1).toUpperCase()} image (its bytes are no image format we read)`
      : `named ${ext} but holds a ${actual.slice(1).toUpperCase()} image; rename it`;
  }
  return null;
}

/** The dataset without files that cannot be images, each named in `skipped`. */
export async function checkFiles(dataset: PageDataset): Promise<PageDataset> {
  const skipped = [...dataset.skipped];
  const classes: PageDataset['classes'] = [];
  for (const c of dataset.classes) {
    const files: File[] = [];
    for (const file of c.files) {
      const problem = await imageFileProblem(file);
      if (problem === null) files.push(file);
      else skipped.push(`${c.name}/${file.name}: ${problem}`);
    }
    if (files.length > 0) classes.push({ name: c.name, files });
    else skipped.push(`${c.name}/: no readable image, so not a class`);
  }
  return { ...dataset, classes, skipped };
}

/** Zips larger than this are refused rather than unpacked in memory. */
export const MAX_ZIP_BYTES = 512 * 1024 * 1024;

/**
 * Unpacks dropped or picked .zip files into picked files: `data.zip` holding
 * `cats/1.png` becomes `data/cats/1.png`; a zip whose entries all sit in one
 * top folder (`data/cats/1.png`) keeps that folder as the root.
 */
export async function unpackZips(files: readonly PickedFile[]): Promise<PickedFile[]> {
  const out: PickedFile[] = [];
  for (const picked of files) {
    if (!picked.path.toLowerCase().endsWith('.zip')) {
      out.push(picked);
      continue;
    }
    if (picked.file.size > MAX_ZIP_BYTES)
      throw new Error(
        `${picked.path} is ${(picked.file.size / 2 ** 20).toFixed(0)} MB; unpack zips over ${MAX_ZIP_BYTES / 2 ** 20} MB first and choose the folder`,
      );
    let entries: Record<string, Uint8Array>;
    try {
      entries = unzipSync(new Uint8Array(await picked.file.arrayBuffer()));
    } catch (error) {
      throw new Error(`${picked.path} could not be unpacked: ${(error as Error).message}`, {
        cause: error,
      });
    }
    const names = Object.keys(entries).filter(
      (n) => !n.endsWith('/') && !n.startsWith('__MACOSX/'),
    );
    const tops = new Set(names.map((n) => n.split('/')[0]));
    const oneRoot = tops.size === 1 && names.every((n) => n.includes('/'));
    const root = picked.path.replace(/\.zip$/i, '');
    for (const name of names) {
      const path = oneRoot ? name : `${root}/${name}`;
      out.push({ file: new File([entries[name]! as BlobPart], name.split('/').at(-1)!), path });
    }
  }
  return out;
}

/**
 * Why this dataset cannot be generated for, or null when it can. `maxClasses`
 * comes from the release's manifests (null while they are being read).
 */
export function datasetProblem(
  dataset: PageDataset,
  maxClasses: number | null,
  query: PageDataset | null = null,
): string | null {
  const n = dataset.classes.length;
  if (query !== null) {
    const names = (d: PageDataset) => d.classes.map((c) => c.name).join(', ');
    if (names(query) !== names(dataset))
      return `the held-out folder's classes (${names(query)}) differ from the dataset's (${names(dataset)})`;
  }
  if (n === 0)
    return dataset.nestedFolders.length > 0
      ? `no images directly inside class folders (found only nested folders: ${dataset.nestedFolders.join(', ')}); choose the folder whose sub-folders hold the images`
      : 'no images in class folders: choose a folder that holds one sub-folder of images per class';
  if (n === 1)
    return `only one class ("${dataset.classes[0]!.name}"): a classifier needs at least 2 class folders`;
  if (maxClasses !== null && n > maxClasses)
    return `${n} classes: this release generates for up to ${maxClasses} classes`;
  return null;
}

interface EntryLike {
  isFile: boolean;
  isDirectory: boolean;
  name: string;
  fullPath: string;
  file?(ok: (f: File) => void, fail: (e: unknown) => void): void;
  createReader?(): { readEntries(ok: (e: EntryLike[]) => void, fail: (e: unknown) => void): void };
}

/** The files of a dropped folder (DataTransferItem.webkitGetAsEntry), with their paths. */
export async function filesOfEntry(entry: EntryLike): Promise<PickedFile[]> {
  if (entry.isFile && entry.file) {
    const file = await new Promise<File>((ok, fail) => entry.file!(ok, fail));
    return [{ file, path: entry.fullPath.replace(/^\//, '') }];
  }
  if (!entry.isDirectory || !entry.createReader) return [];
  const reader = entry.createReader();
  const out: PickedFile[] = [];
  for (;;) {
    // readEntries returns at most ~100 entries per call; read until it returns none.
    const batch = await new Promise<EntryLike[]>((ok, fail) => reader.readEntries(ok, fail));
    if (batch.length === 0) return out;
    for (const child of batch) out.push(...(await filesOfEntry(child)));
  }
}

/** Every class needs this many images for the automatic hold-out. */
export const MIN_IMAGES_TO_HOLD_OUT = 3;

/**
 * Support and held-out images: the held-out folder when one was chosen; else,
 * with `holdOut` and at least 3 images in every class, every third image (by
 * name) of each class; else no held-out images.
 */
export function heldOutSplit(
  dataset: PageDataset,
  query: PageDataset | null,
  holdOut: boolean,
): { support: PageDataset['classes']; query: PageDataset['classes'] | null } {
  if (query !== null) return { support: dataset.classes, query: query.classes };
  if (!holdOut || dataset.classes.some((c) => c.files.length < MIN_IMAGES_TO_HOLD_OUT))
    return { support: dataset.classes, query: null };
  const support: PageDataset['classes'] = [];
  const held: PageDataset['classes'] = [];
  for (const c of dataset.classes) {
    const files = [...c.files].sort((a, b) => a.name.localeCompare(b.name));
    support.push({ name: c.name, files: files.filter((_, i) => i % 3 !== 2) });
    held.push({ name: c.name, files: files.filter((_, i) => i % 3 === 2) });
  }
  return { support, query: held };
}
