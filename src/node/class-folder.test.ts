import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FolderError, readClassFolder } from './class-folder';

function folder(layout: Record<string, string[]>, loose: string[] = []): string {
  const root = mkdtempSync(join(tmpdir(), 'class-folder-'));
  for (const [name, files] of Object.entries(layout)) {
    mkdirSync(join(root, name));
    for (const file of files) writeFileSync(join(root, name, file), 'x');
  }
  for (const file of loose) writeFileSync(join(root, file), 'x');
  return root;
}

describe('readClassFolder', () => {
  it('takes classes in sorted order and lists skipped files', () => {
    const root = folder({ zebra: ['b.PNG', 'a.jpg', 'notes.txt'], ant: ['x.webp', '.DS_Store'] }, [
      'README.md',
    ]);
    const read = readClassFolder(root);
    expect(read.classes).toEqual(['ant', 'zebra']);
    expect(read.images[1]!.map((p) => p.split('/').pop())).toEqual(['a.jpg', 'b.PNG']);
    expect(read.skipped.sort()).toEqual(['README.md', 'zebra/notes.txt']);
  });

  it('explains one class, an empty class, loose images and a missing folder', () => {
    expect(() => readClassFolder(folder({ only: ['a.png'] }))).toThrow(
      /1 class folder; a classifier needs at least 2/,
    );
    expect(() => readClassFolder(folder({ a: ['a.png'], b: ['notes.txt'] }))).toThrow(
      /"b" has no images/,
    );
    expect(() => readClassFolder(folder({}, ['a.png', 'b.png']))).toThrow(
      /2 images but no class folders/,
    );
    expect(() => readClassFolder('/no/such/folder')).toThrow(FolderError);
  });
});
