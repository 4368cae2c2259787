import { describe, expect, it } from 'vitest';
import { datasetProblem, groupByClass, type PickedFile } from './dataset';

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
});
