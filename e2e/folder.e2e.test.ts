// What a person meets choosing a dataset in the page (issue 17): nested folders,
// unreadable files and zips are sorted out when the folder is read; the
// progress names the backend at work; every download click saves its file.

import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { unzipSync, zipSync } from 'fflate';
import type { Browser, Download, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { nodeTf } from '../src/node/tf-node';
import { checkedPages, generationDone, launchChromium } from './browser';

const fixtures = resolve(import.meta.dirname, '../models/fixtures/images');

function folder(files: Record<string, string | Uint8Array>): string {
  const root = join(mkdtempSync(join(tmpdir(), 'd2nwg-e2e-')), 'my-dataset');
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(root, path, '..'), { recursive: true });
    if (typeof content === 'string') copyFileSync(join(fixtures, content), join(root, path));
    else writeFileSync(join(root, path), content);
  }
  return root;
}

async function summary(page: Page): Promise<string> {
  await expect.poll(() => page.getByTestId('dataset-summary').count()).toBe(1);
  return page.getByTestId('dataset-summary').innerText();
}

describe('choosing a dataset, Chromium without WebGPU', () => {
  let browser: Browser;
  const pages = checkedPages(() => browser);
  beforeAll(async () => {
    browser = await launchChromium({ webgpu: false });
  });
  afterAll(() => browser?.close());

  it('shows a drop zone, leaves nested folders and unreadable files out when the folder is read', async () => {
    const { page } = await pages.open();
    await page.goto(`${inject('appUrl')}?backend=wasm`);
    expect(await page.getByTestId('drop-zone').isVisible()).toBe(true);
    expect(await page.getByTestId('drop-zone').innerText()).toContain(
      'Drop a folder or a .zip here',
    );
    const png = readFileSync(join(fixtures, 'tiny.png'));
    await page.getByTestId('dataset-input').setInputFiles(
      folder({
        'cats/a.png': 'tall.png',
        'cats/empty.png': new Uint8Array(),
        'cats/truncated-name.jpg': png, // a PNG named .jpg
        'cats/kittens/b.png': 'wide.png',
        'dogs/c.png': 'tiny.png',
        'dogs/puppies/d.png': 'wide.png',
      }),
    );
    const text = await summary(page);
    expect(text).toContain('2 classes: cats (1), dogs (1)');
    expect(text).toContain(
      'Folders inside class folders are not classes, and their images are not used: cats/kittens, dogs/puppies.',
    );
    expect(text).toContain('4 files left out');
    await page.getByText('4 files left out').click();
    const details = await summary(page);
    expect(details).toContain('cats/empty.png: an empty file (0 bytes)');
    expect(details).toContain(
      'cats/truncated-name.jpg: named .jpg but holds a PNG image; rename it',
    );
  });

  it('says "1 class" and reads a zip of class folders', async () => {
    const { page } = await pages.open();
    await page.goto(`${inject('appUrl')}?backend=wasm`);
    await page.getByTestId('dataset-input').setInputFiles(folder({ 'only/a.png': 'tiny.png' }));
    expect(await summary(page)).toContain('1 class: only (1)');
    expect(await page.getByTestId('dataset-problem').innerText()).toMatch(/^only one class/);
    const png = readFileSync(join(fixtures, 'tiny.png'));
    const zip = zipSync({ 'pets/cats/1.png': png, 'pets/cats/2.png': png, 'pets/dogs/3.png': png });
    await page
      .getByTestId('zip-input')
      .setInputFiles({ name: 'pets.zip', mimeType: 'application/zip', buffer: Buffer.from(zip) });
    await expect.poll(() => summary(page)).toContain('2 classes: cats (2), dogs (1)');
    expect(await page.getByTestId('dataset-problem').count()).toBe(0);
  });

  it('answers every bad input with a message and stays usable: no classes, too many, truncated, huge, odd names', async () => {
    const { page } = await pages.open();
    await page.goto(`${inject('appUrl')}?backend=wasm`);
    const input = page.getByTestId('dataset-input');
    const problem = () => page.getByTestId('dataset-problem').innerText();
    // A folder without class folders.
    await input.setInputFiles(folder({ 'readme.txt': new TextEncoder().encode('notes') }));
    await expect.poll(problem).toContain('no images in class folders');
    // More classes than the release generates for.
    const many: Record<string, string> = {};
    for (let c = 0; c < 21; c++) many[`class-${c}/a.png`] = 'tiny.png';
    await input.setInputFiles(folder(many));
    await expect.poll(problem).toBe('21 classes: this release generates for up to 20 classes');
    expect(await page.getByTestId('generate-button').isDisabled()).toBe(true);
    // A truncated PNG (its header is whole, its pixels are not), a 6000×6000 image and odd names.
    const png = readFileSync(join(fixtures, 'tiny.png'));
    const huge = await sharp({
      create: { width: 6000, height: 6000, channels: 3, background: { r: 200, g: 40, b: 40 } },
    })
      .png()
      .toBuffer();
    await input.setInputFiles(
      folder({
        'cats/a.png': 'tall.png',
        'cats/ça va #1 (copy).png': 'wide.png',
        'cats/truncated.png': png.subarray(0, Math.floor(png.length / 2)),
        'dogs/日本 語.png': 'tiny.png',
        'dogs/huge.png': new Uint8Array(huge),
        'dogs/x.png': 'glyph-rgba.png',
      }),
    );
    await expect
      .poll(() => page.getByTestId('dataset-summary').innerText())
      .toContain('2 classes: cats (3), dogs (3)');
    await page.getByTestId('holdout-checkbox').uncheck();
    await page.getByTestId('samples-input').fill('1');
    await page.getByTestId('steps-input').fill('1');
    await page.getByTestId('generate-button').click();
    await generationDone(page, 90_000);
    const result = await page.getByTestId('generate-status').innerText();
    expect(result).toContain('1 image could not be read and was left out');
    await page.getByText('1 image could not be read and was left out').click();
    expect(await page.getByTestId('generate-status').innerText()).toMatch(
      /cats\/truncated\.png: not a readable image/,
    );
    expect(await page.getByTestId('generate-timings').innerText()).toContain(
      '1 heads for 2 classes',
    );
  });

  it('names the backend at work while generating, not "auto"', async () => {
    const { page } = await pages.open();
    await page.goto(inject('appUrl'));
    await page
      .getByTestId('dataset-input')
      .setInputFiles(folder({ 'a/1.png': 'tall.png', 'b/2.png': 'wide.png' }));
    await summary(page);
    await page.getByTestId('steps-input').fill('1000');
    await page.getByTestId('generate-button').click();
    await expect
      .poll(() => page.getByTestId('generate-progress').innerText(), { timeout: 60_000 })
      .toMatch(/^Working on wasm \(webgpu skipped: .*\): denoising/);
    // One bar per stage; sampled while it runs, no bar ever goes back.
    const bars = page.getByTestId('stage-bars').locator('li');
    let previous: number[] = [];
    for (let i = 0; i < 8; i++) {
      const values = (await bars.evaluateAll((items) =>
        items.map((item) => Number(item.getAttribute('data-value'))),
      )) as number[];
      values.forEach((v, k) => expect(v).toBeGreaterThanOrEqual(previous[k] ?? 0));
      previous = values;
      await page.waitForTimeout(150);
    }
    expect(previous.slice(0, 3)).toEqual([1, 1, 1]); // generator, backbone, features: done
    expect(previous.at(-1)).toBe(0); // evaluate: not begun
    await page.getByTestId('cancel-button').click();
    await expect
      .poll(() => page.getByTestId('generate-status').getAttribute('data-status'))
      .toBe('error');
  });

  it('saves a file for every one of 100 download clicks', async () => {
    const { page } = await pages.open();
    await page.goto(`${inject('appUrl')}?backend=wasm`);
    await page
      .getByTestId('dataset-input')
      .setInputFiles(folder({ 'a/1.png': 'tall.png', 'b/2.png': 'wide.png' }));
    await summary(page);
    await page.getByTestId('samples-input').fill('1');
    await page.getByTestId('steps-input').fill('1');
    await page.getByTestId('generate-button').click();
    await generationDone(page, 60_000);
    const downloads: Download[] = [];
    page.on('download', (d) => downloads.push(d));
    const button = page.getByTestId('generated-table').getByRole('button', { name: 'JSON' });
    for (let i = 0; i < 100; i++) await button.click();
    await expect.poll(() => downloads.length, { timeout: 60_000 }).toBe(100);
    const saved = await Promise.all(downloads.map((d) => d.path()));
    for (const path of saved)
      expect(JSON.parse(readFileSync(path, 'utf8')).classes).toEqual(['a', 'b']);

    // The whole classifier: a tfjs graph model that takes images and gives 2 probabilities.
    downloads.length = 0;
    await page.getByTestId('classifier-0').click();
    await expect.poll(() => downloads.length, { timeout: 60_000 }).toBe(1);
    expect(downloads[0]!.suggestedFilename()).toBe('classifier-sample-0.zip');
    const zip = unzipSync(readFileSync(await downloads[0]!.path()));
    const text = (name: string) => new TextDecoder().decode(zip[`classifier/${name}`]);
    expect(JSON.parse(text('classes.json'))).toEqual(['a', 'b']);
    expect(text('README.md')).toContain('generated + refined');
    const model = JSON.parse(text('model.json'));
    const weights = zip['classifier/weights.bin']!;
    const { tf } = await nodeTf();
    const graph = await tf.loadGraphModel(
      tf.io.fromMemory({
        modelTopology: model.modelTopology,
        userDefinedMetadata: model.userDefinedMetadata,
        weightSpecs: model.weightsManifest.flatMap((g: { weights: unknown[] }) => g.weights),
        weightData: weights.buffer.slice(
          weights.byteOffset,
          weights.byteOffset + weights.byteLength,
        ) as ArrayBuffer,
      }),
    );
    const x = tf.fill([1, 224, 224, 3], 0.5);
    const y = graph.predict(x) as import('@tensorflow/tfjs').Tensor;
    const p = Array.from(await y.data());
    tf.dispose([x, y]);
    expect(p).toHaveLength(2);
    expect(p[0]! + p[1]!).toBeCloseTo(1, 5);

    // The same classifier as one ONNX graph: the same probabilities from onnxruntime.
    downloads.length = 0;
    await page.getByTestId('classifier-onnx-0').click();
    await expect.poll(() => downloads.length, { timeout: 60_000 }).toBe(1);
    expect(downloads[0]!.suggestedFilename()).toBe('classifier-sample-0-onnx.zip');
    const onnxZip = unzipSync(readFileSync(await downloads[0]!.path()));
    expect(Object.keys(onnxZip).sort()).toEqual([
      'classifier/README.md',
      'classifier/classes.json',
      'classifier/classifier.onnx',
    ]);
    const session = await ort.InferenceSession.create(onnxZip['classifier/classifier.onnx']!);
    const out = await session.run({
      images: new ort.Tensor(
        'float32',
        new Float32Array(224 * 224 * 3).fill(0.5),
        [1, 224, 224, 3],
      ),
    });
    const q = Array.from(out.probabilities!.data as Float32Array);
    q.forEach((v, k) => expect(v).toBeCloseTo(p[k]!, 3));
    await session.release();
  });

  it('is served with a policy of its own origin only, and 404s for release files that are not there', async () => {
    const { page } = await pages.open();
    const response = await page.goto(inject('appUrl'));
    expect(response?.headers()['content-security-policy']).toContain("default-src 'self'");
    const missing = await fetch(new URL('release/head/no-such-graph.onnx', inject('appUrl')));
    expect(missing.status).toBe(404);
    const manifest = await fetch(new URL('release/head/manifest.json', inject('appUrl')));
    expect(manifest.status).toBe(200);
    expect(Number(manifest.headers.get('content-length'))).toBeGreaterThan(0);
    expect(manifest.headers.get('etag')).not.toBeNull();
  });
});
