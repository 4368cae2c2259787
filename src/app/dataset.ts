// A dataset as the page receives it: files from a folder picker or a dropped
// folder, grouped into classes by their sub-folder.

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
}

function isImage(name: string): boolean {
  const lower = name.toLowerCase();
  return IMAGE_EXTENSIONS.some((ext) => lower.endsWith(ext));
}

/**
 * Groups files by the folder directly above them: a class per sub-folder,
 * sorted by name (the order of the generated rows, as in the CLI). Files at
 * the top level, hidden files and non-images are skipped with a reason.
 */
export function groupByClass(files: readonly PickedFile[]): PageDataset {
  const classes = new Map<string, File[]>();
  const skipped: string[] = [];
  for (const { file, path } of files) {
    const parts = path.split('/').filter((p) => p.length > 0);
    const name = parts.at(-1) ?? file.name;
    if (name.startsWith('.')) continue;
    if (parts.length < 3) {
      skipped.push(`${path}: not inside a class folder`);
      continue;
    }
    if (!isImage(name)) {
      skipped.push(`${path}: not an image (${IMAGE_EXTENSIONS.join(', ')})`);
      continue;
    }
    const cls = parts.at(-2)!;
    classes.set(cls, [...(classes.get(cls) ?? []), file]);
  }
  const sorted = [...classes.keys()].sort();
  return { classes: sorted.map((name) => ({ name, files: classes.get(name)! })), skipped };
}

/**
 * Why this dataset cannot be generated for, or null when it can. `maxClasses`
 * comes from the release's manifests (null while they are being read).
 */
export function datasetProblem(dataset: PageDataset, maxClasses: number | null): string | null {
  const n = dataset.classes.length;
  if (n === 0)
    return 'no images in class folders: choose a folder that holds one sub-folder of images per class';
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
