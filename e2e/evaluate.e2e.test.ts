// The page's held-out accuracies are the CLI's: the same folders, seed and
// settings give the same numbers in `d2nwg evaluate --json` and in the table.

import { copyFileSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it, vi } from 'vitest';
import { main } from '../src/node/cli';
import {
  checkedPages,
  fineTuneEveryStart,
  generationDone,
  launchChromium,
  saveScreenshot,
} from './browser';

const fixtures = resolve(import.meta.dirname, '../models/fixtures/images');

function folder(root: string, layout: Record<string, string[]>): string {
  for (const [name, files] of Object.entries(layout)) {
    mkdirSync(join(root, name), { recursive: true });
    for (const file of files) copyFileSync(join(fixtures, file), join(root, name, file));
  }
  return root;
}

interface CliEvaluation {
  generated: { mean: number; accuracies: number[] };
  generated_refined: { mean: number; lambda: number };
  nearest_class_mean: number;
  logistic_regression: { accuracy: number; c: number };
  trained_head: { accuracy: number };
  random_init: { mean: number };
}

async function cliEvaluation(support: string, query: string, out: string): Promise<CliEvaluation> {
  const stdout: string[] = [];
  const settings = ['--samples', '2', '--steps', '3', '--seed', '0', '--precision', 'fp32'];
  vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
  vi.spyOn(process.stdout, 'write').mockImplementation((s) => (stdout.push(String(s)), true));
  try {
    expect(await main(['generate', '--data', support, '--out', out, ...settings])).toBe(0);
    expect(
      await main(['evaluate', '--support', support, '--query', query, '--weights', out, '--json']),
    ).toBe(0);
  } finally {
    vi.restoreAllMocks();
  }
  return JSON.parse(stdout.join('')) as CliEvaluation;
}

async function pageAccuracy(page: Page, row: string): Promise<number> {
  return Number(await page.getByTestId(`evaluation-${row}`).getAttribute('data-accuracy'));
}

describe('held-out accuracy in the page', () => {
  let browser: Browser;
  const pages = checkedPages(() => browser);
  beforeAll(async () => {
    browser = await launchChromium({ webgpu: false });
  });
  afterAll(() => browser?.close());

  it('equals d2nwg evaluate on the same folders and seed', async () => {
    const scratch = mkdtempSync(join(tmpdir(), 'd2nwg-eval-'));
    const support = folder(join(scratch, 'support'), {
      shapes: ['tall.png', 'wide.png'],
      squares: ['large-checker.png', 'tiny.png'],
    });
    const query = folder(join(scratch, 'query'), {
      shapes: ['glyph-rgba.png', 'wide.png'],
      squares: ['tiny.png', 'tall.png'],
    });
    const cli = await cliEvaluation(support, query, join(scratch, 'heads'));

    const { page } = await pages.open();
    await page.goto(`${inject('appUrl')}?backend=wasm`);
    await page.getByTestId('dataset-input').setInputFiles(support);
    await page.getByTestId('query-input').setInputFiles(query);
    await expect.poll(() => page.getByTestId('query-summary').innerText()).toContain('shapes (2)');
    await page.getByTestId('samples-input').fill('2');
    await page.getByTestId('steps-input').fill('3');
    await page.getByTestId('generate-button').click();
    await generationDone(page, 60_000);
    expect(await page.getByTestId('evaluation-table').innerText()).toContain(
      'Accuracy on 4 held-out images',
    );
    expect(await pageAccuracy(page, 'generated')).toBeCloseTo(cli.generated.mean, 9);
    expect(await pageAccuracy(page, 'generated-refined')).toBeCloseTo(
      cli.generated_refined.mean,
      9,
    );
    expect(await pageAccuracy(page, 'logistic-regression')).toBeCloseTo(
      cli.logistic_regression.accuracy,
      9,
    );
    expect(await pageAccuracy(page, 'nearest-class-mean')).toBeCloseTo(cli.nearest_class_mean, 9);
    expect(await pageAccuracy(page, 'trained-head')).toBeCloseTo(cli.trained_head.accuracy, 9);
    expect(await pageAccuracy(page, 'random-init')).toBeCloseTo(cli.random_init.mean, 9);
    // The best sample's confusion matrix counts the 4 held-out images; each has its thumbnail.
    const best = Math.max(...cli.generated.accuracies);
    expect(await page.getByTestId('best-sample').locator('h3').innerText()).toContain(
      `${(100 * best).toFixed(1)}% on the held-out images`,
    );
    const cells = await page.getByTestId('confusion-matrix').locator('tbody td').allInnerTexts();
    expect(cells.map(Number).reduce((a, b) => a + b, 0)).toBe(4);
    expect(await page.getByTestId('predictions').locator('li img').count()).toBe(4);
    // The chart draws one bar per row of the table, each titled with its number.
    const rows = await page.getByTestId('evaluation-table').locator('tbody tr').count();
    const bars = page.getByTestId('comparison-chart').locator('svg rect title');
    await expect.poll(() => bars.count()).toBe(rows);
    expect(await bars.first().textContent()).toMatch(/^generated \(2 heads, mean\): \d+\.\d%$/);
    // Fine-tuning in the page: every start's held-out accuracy after each of 10 epochs.
    expect(await fineTuneEveryStart(page, 3)).toEqual([
      'generated',
      'generated + refined',
      'random init',
    ]);
    expect(await page.getByTestId('fine-tune-chart').locator('svg circle').count()).toBe(3 * 11);
    // README's picture of this flow: `UPDATE_SCREENSHOTS=1 npm run test:e2e` rewrites it.
    if (process.env.UPDATE_SCREENSHOTS === '1')
      await saveScreenshot(
        page.locator('section[aria-labelledby="generate-title"]'),
        resolve(import.meta.dirname, 'screenshots/own-folder.png'),
      );
  });
});
