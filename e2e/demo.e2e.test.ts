// The demo flow a visitor takes first: "Try a demo dataset" → one click → the
// comparison chart of generated, refined, pretrained and trained-here weights on
// the demo's held-out images, then fine-tuning from each start. On wasm and on
// WebGPU (the generator on Chromium's software adapter, features on wasm).

import { copyFileSync, mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  checkedPages,
  fineTuneEveryStart,
  generationDone,
  launchChromium,
  saveScreenshot,
} from './browser';

interface DemoIndex {
  demos: {
    id: string;
    side: string;
    classes: string[];
    query: Record<string, string[]>;
    pretrained: { query_accuracy: number };
  }[];
}

const fixtures = resolve(import.meta.dirname, '../models/fixtures/images');

const index = JSON.parse(
  readFileSync(resolve(import.meta.dirname, '../public/demo/index.json'), 'utf8'),
) as DemoIndex;

async function runDemo(page: Page, id: string): Promise<void> {
  // Small settings first: the demo button generates with them at once.
  await page.getByTestId('samples-input').fill('2');
  await page.getByTestId('steps-input').fill('5');
  await page.getByTestId(`demo-${id}`).click();
  await generationDone(page);
}

describe('the demo datasets', () => {
  let browser: Browser;
  const pages = checkedPages(() => browser);
  beforeAll(async () => {
    browser = await launchChromium({ webgpu: true });
  });
  afterAll(() => browser?.close());

  it('offers seen and unseen demos, and one click gives the comparison with the pretrained head', async () => {
    expect(new Set(index.demos.map((d) => d.side))).toEqual(new Set(['seen', 'unseen']));
    const { page } = await pages.open();
    await page.goto(`${inject('appUrl')}?backend=wasm`);
    for (const demo of index.demos)
      await expect.poll(() => page.getByTestId(`demo-${demo.id}`).count()).toBe(1);
    const demo = index.demos.find((d) => d.side === 'seen')!;
    await runDemo(page, demo.id);
    const queries = Object.values(demo.query).reduce((n, files) => n + files.length, 0);
    expect(await page.getByTestId('evaluation-table').innerText()).toContain(
      `Accuracy on ${queries} held-out images (${demo.classes.length} classes`,
    );
    // The pretrained row is the zoo checkpoint the factory measured on the same images.
    const pretrained = Number(
      await page.getByTestId('evaluation-pretrained').getAttribute('data-accuracy'),
    );
    expect(Math.abs(pretrained - demo.pretrained.query_accuracy)).toBeLessThanOrEqual(
      1.5 / queries,
    );
    const rows = await page.getByTestId('evaluation-table').locator('tbody tr').count();
    await expect
      .poll(() => page.getByTestId('comparison-chart').locator('svg rect title').count())
      .toBe(rows);
    // Fine-tuning starts from the pretrained head too.
    expect(await fineTuneEveryStart(page, 4)).toContain('pretrained');
    // README's picture of this flow: `UPDATE_SCREENSHOTS=1 npm run test:e2e` rewrites it.
    if (process.env.UPDATE_SCREENSHOTS === '1')
      await saveScreenshot(
        page.locator('section[aria-labelledby="generate-title"]'),
        resolve(import.meta.dirname, 'screenshots/demo-flow.png'),
      );
  });

  it('runs an unseen demo with the generator on WebGPU to the same chart', async () => {
    const { page } = await pages.open();
    await page.goto(`${inject('appUrl')}?backend=webgpu&features=wasm`);
    const demo = index.demos.find((d) => d.side === 'unseen')!;
    await expect.poll(() => page.getByTestId(`demo-${demo.id}`).count()).toBe(1);
    await runDemo(page, demo.id);
    expect(await page.getByTestId('generate-backend').getAttribute('data-backend')).toBe('webgpu');
    // The head release ships fp32 graphs only (a few MB); the page says which precision ran.
    expect(await page.getByTestId('generate-precision').innerText()).toBe('fp32');
    expect(await page.getByTestId('evaluation-pretrained').count()).toBe(1);
    await expect
      .poll(() => page.getByTestId('comparison-chart').locator('svg rect title').count())
      .toBeGreaterThan(4);
  });

  it('runs the own-folder flow with the generator on WebGPU to the comparison chart', async () => {
    const root = mkdtempSync(join(tmpdir(), 'd2nwg-own-'));
    const files: Record<string, string[]> = {
      shapes: ['tall.png', 'wide.png', 'glyph-rgba.png'],
      squares: ['large-checker.png', 'tiny.png', 'tall.png'],
    };
    for (const [name, list] of Object.entries(files)) {
      mkdirSync(join(root, 'mine', name), { recursive: true });
      for (const f of list) copyFileSync(join(fixtures, f), join(root, 'mine', name, f));
    }
    const { page } = await pages.open();
    await page.goto(`${inject('appUrl')}?backend=webgpu&features=wasm`);
    await page.getByTestId('dataset-input').setInputFiles(join(root, 'mine'));
    await page.getByTestId('samples-input').fill('2');
    await page.getByTestId('steps-input').fill('5');
    await page.getByTestId('generate-button').click();
    await generationDone(page);
    expect(await page.getByTestId('generate-backend').getAttribute('data-backend')).toBe('webgpu');
    // Every third image held out: one a class.
    expect(await page.getByTestId('evaluation-table').innerText()).toContain(
      'Accuracy on 2 held-out images',
    );
    expect(await page.getByTestId('evaluation-pretrained').count()).toBe(0);
    await expect
      .poll(() => page.getByTestId('comparison-chart').locator('svg rect title').count())
      .toBe(await page.getByTestId('evaluation-table').locator('tbody tr').count());
  });
});
