import { describe, expect, it } from 'vitest';
import { zipSync } from 'fflate';
import {
  checkFiles,
  datasetProblem,
  groupByClass,
  heldOutSplit,
  unpackZips,
  type PickedFile,
} from './dataset';

const MAX_CLASSES = 20; // a release's max_classes

function picked(...paths: string[]): PickedFile[] {
  return paths.map((path) => ({ file: new File(['x'], path.split('/').at(-1)!), path }));
}

describe('a picked folder as classes', () => {
  it('makes one class per sub-folder, sorted, and says which files it left out', () => {
    const dataset = groupByClass(
      picked(
        'data/zebra/1.png',
        'data/apple/a.JPG',
        'data/apple/b.webp',
        'data/readme.md',
        'data/apple/notes.txt',
        'data/apple/.DS_Store',
      ),
    );
    expect(dataset.classes.map((c) => [c.name, c.files.map((f) => f.name)])).toEqual([
      ['apple', ['a.JPG', 'b.webp']],
      ['zebra', ['1.png']],
    ]);
    expect(dataset.skipped).toEqual([
      'data/readme.md: not inside a class folder',
      'data/apple/notes.txt: not an image (.png, .jpg, .jpeg, .webp, .bmp, .gif)',
    ]);
    expect(datasetProblem(dataset, MAX_CLASSES)).toBeNull();
  });

  it('names what is wrong with no classes, one class, or too many', () => {
    expect(datasetProblem(groupByClass(picked('data/a.png')), MAX_CLASSES)).toMatch(
      /^no images in class folders/,
    );
    expect(datasetProblem(groupByClass(picked('data/cats/a.png')), MAX_CLASSES)).toBe(
      'only one class ("cats"): a classifier needs at least 2 class folders',
    );
    const many = picked(...Array.from({ length: MAX_CLASSES + 1 }, (_, i) => `d/c${i}/x.png`));
    expect(datasetProblem(groupByClass(many), null)).toBeNull();
    expect(datasetProblem(groupByClass(many), MAX_CLASSES)).toBe(
      `${MAX_CLASSES + 1} classes: this release generates for up to ${MAX_CLASSES} classes`,
    );
  });

  it('keeps nested folders out of the classes and says which they are', () => {
    const dataset = groupByClass(
      picked('data/cats/1.png', 'data/cats/deeper/2.png', 'data/dogs/3.png', 'data/dogs/x/y/4.png'),
    );
    expect(dataset.classes.map((c) => c.name)).toEqual(['cats', 'dogs']);
    expect(dataset.nestedFolders).toEqual(['cats/deeper', 'dogs/x/y']);
    expect(dataset.skipped[0]).toBe(
      'data/cats/deeper/2.png: in the nested folder cats/deeper; only images directly inside a class folder are used',
    );
    const onlyNested = groupByClass(picked('data/all/cats/1.png', 'data/all/dogs/2.png'));
    expect(datasetProblem(onlyNested, MAX_CLASSES)).toMatch(
      /^no images directly inside class folders \(found only nested folders: all\/cats, all\/dogs\)/,
    );
  });
});

const PNG = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0]);
const JPEG = Uint8Array.from([0xff, 0xd8, 0xff, 0xe0, 0, 0, 0, 0]);

function file(path: string, bytes: Uint8Array): PickedFile {
  return { file: new File([bytes as BlobPart], path.split('/').at(-1)!), path };
}

describe('files checked as soon as the folder is read', () => {
  it('leaves out empty and renamed files before any generation, and a class left with none', async () => {
    const dataset = await checkFiles(
      groupByClass([
        file('d/a/ok.png', PNG),
        file('d/a/empty.png', new Uint8Array()),
        file('d/a/renamed.png', JPEG),
        file('d/a/text.jpg', new TextEncoder().encode('hello world')),
        file('d/b/ok.jpg', JPEG),
        file('d/c/empty.png', new Uint8Array()),
      ]),
    );
    expect(dataset.classes.map((c) => [c.name, c.files.length])).toEqual([
      ['a', 1],
      ['b', 1],
    ]);
    expect(dataset.skipped).toEqual([
      'a/empty.png: an empty file (0 bytes)',
      'a/renamed.png: named .png but holds a JPG image; rename it',
      'a/text.jpg: not a JPG image (its bytes are no image format we read)',
      'c/empty.png: an empty file (0 bytes)',
      'c/: no readable image, so not a class',
    ]);
  });

  it('unpacks a zip of class folders, with or without one top folder', async () => {
    const flat = zipSync({ 'cats/1.png': PNG, 'dogs/2.png': PNG, 'dogs/': new Uint8Array() });
    const rooted = zipSync({ 'pets/cats/1.png': PNG, 'pets/dogs/2.png': PNG });
    for (const [name, bytes] of [
      ['flat.zip', flat],
      ['rooted.zip', rooted],
    ] as const) {
      const files = await unpackZips([file(name, bytes)]);
      const dataset = groupByClass(files);
      expect(
        dataset.classes.map((c) => c.name),
        name,
      ).toEqual(['cats', 'dogs']);
      expect(dataset.skipped, name).toEqual([]);
    }
    await expect(unpackZips([file('broken.zip', PNG)])).rejects.toThrow(
      /^broken\.zip could not be unpacked/,
    );
  });
});

describe('held-out images', () => {
  const dataset = groupByClass(
    picked(
      'd/a/1.png',
      'd/a/2.png',
      'd/a/3.png',
      'd/a/4.png',
      'd/b/5.png',
      'd/b/6.png',
      'd/b/7.png',
    ),
  );
  const names = (classes: { files: File[] }[] | null) =>
    classes?.map((c) => c.files.map((f) => f.name));

  it('holds out every third image of each class, by name', () => {
    const split = heldOutSplit(dataset, null, true);
    expect(names(split.support)).toEqual([
      ['1.png', '2.png', '4.png'],
      ['5.png', '6.png'],
    ]);
    expect(names(split.query)).toEqual([['3.png'], ['7.png']]);
  });

  it('holds out nothing when asked not to, or when a class has fewer than 3 images', () => {
    expect(heldOutSplit(dataset, null, false).query).toBeNull();
    const small = groupByClass(
      picked('d/a/1.png', 'd/a/2.png', 'd/b/3.png', 'd/b/4.png', 'd/b/5.png'),
    );
    expect(heldOutSplit(small, null, true)).toEqual({ support: small.classes, query: null });
  });

  it('takes a held-out folder of the same classes, and names a mismatch', () => {
    const query = groupByClass(picked('q/a/x.png', 'q/b/y.png'));
    expect(names(heldOutSplit(dataset, query, true).query)).toEqual([['x.png'], ['y.png']]);
    expect(datasetProblem(dataset, 20, query)).toBeNull();
    const other = groupByClass(picked('q/a/x.png', 'q/c/y.png'));
    expect(datasetProblem(dataset, 20, other)).toBe(
      "the held-out folder's classes (a, c) differ from the dataset's (a, b)",
    );
  });
});
