import { copyFileSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { checkedPages, launchChromium, openDiagnostics, settled } from './browser';

const fixtures = resolve(import.meta.dirname, '../models/fixtures/images');

/** A dataset folder as a user has it: a sub-folder per class, and a stray text file. */
function datasetFolder(layout: Record<string, string[]>): string {
  const root = join(mkdtempSync(join(tmpdir(), 'd2nwg-e2e-')), 'my-dataset');
  for (const [name, files] of Object.entries(layout)) {
    mkdirSync(join(root, name), { recursive: true });
    for (const file of files) copyFileSync(join(fixtures, file), join(root, name, file));
  }
  writeFileSync(join(root, 'squares', 'notes.txt'), 'not an image');
  return root;
}

const twoClasses = {
  shapes: ['tall.png', 'wide.png', 'glyph-rgba.png'],
  squares: ['large-checker.png', 'tiny.png'],
};

describe('generation in the page, Chromium with WebGPU exposed', () => {
  let browser: Browser;
  const pages = checkedPages(() => browser);
  beforeAll(async () => {
    browser = await launchChromium({ webgpu: true });
  });
  afterAll(() => browser?.close());

  for (const backend of ['webgpu', 'wasm'] as const)
    for (const family of ['head', 'cnn'] as const)
      it(`the ${family} generator replays the factory's trace on ${backend}`, async () => {
        const { page, errors } = await pages.open();
        await page.goto(`${inject('appUrl')}?backend=${backend}`);
        await openDiagnostics(page);
        await page.getByRole('button', { name: `Check the ${family} generator` }).click();
        const status = await settled(page, `check-${family}-status`);
        const shown = await page.getByTestId(`check-${family}-status`).innerText();
        expect(status, `${shown}\n${errors.join('\n')}`).toBe('done');
        expect(await page.getByTestId(`check-${family}-backend`).getAttribute('data-backend')).toBe(
          backend,
        );
        expect(await page.getByTestId(`check-${family}-verdict`).innerText(), shown).toBe('match');
      });

  it('generates CNNs for a dropped-in folder on WebGPU, with downloads and the backend shown', async () => {
    const { page, errors } = await pages.open();
    // The backbone on wasm: its WebGPU run is the features test's; here the generator's is.
    await page.goto(`${inject('appUrl')}?backend=webgpu&features=wasm`);
    await page.getByTestId('dataset-input').setInputFiles(datasetFolder(twoClasses));
    await expect
      .poll(() => page.getByTestId('dataset-summary').innerText())
      .toContain('2 classes: shapes (3), squares (2)');
    expect(await page.getByTestId('dataset-summary').innerText()).toContain('1 file left out');
    await page.getByTestId('family-select').selectOption('cnn');
    await page.getByTestId('arch-select').selectOption('cnn-s');
    await page.getByTestId('samples-input').fill('2');
    await page.getByTestId('steps-input').fill('5');
    await page.getByTestId('generate-button').click();
    const status = await settled(page, 'generate-status');
    expect(
      status,
      `${await page.getByTestId('generate-status').innerText()}\n${errors.join('\n')}`,
    ).toBe('done');
    expect(await page.getByTestId('generate-backend').getAttribute('data-backend')).toBe('webgpu');
    expect(await page.getByTestId('generate-status').innerText()).toContain('(features on wasm)');
    const rows = page.getByTestId('generated-table').locator('tbody tr');
    expect(await rows.count()).toBe(2);
    expect(await rows.first().innerText()).toContain('fc2.weight [2×20]');
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      rows.first().getByRole('button', { name: 'ONNX' }).click(),
    ]);
    expect(download.suggestedFilename()).toBe('sample-0.onnx');
  });

  it('refuses a folder with one class, and a cancelled run keeps the dataset', async () => {
    const { page } = await pages.open();
    await page.goto(`${inject('appUrl')}?backend=wasm`);
    await page
      .getByTestId('dataset-input')
      .setInputFiles(datasetFolder({ squares: ['large-checker.png', 'tiny.png'] }));
    await expect
      .poll(() => page.getByTestId('dataset-problem').innerText())
      .toMatch(/only one class \("squares"\): a classifier needs at least 2 class folders/);
    expect(await page.getByTestId('generate-button').isDisabled()).toBe(true);

    await page.getByTestId('dataset-input').setInputFiles(datasetFolder(twoClasses));
    await page.getByTestId('steps-input').fill('1000');
    await page.getByTestId('generate-button').click();
    await expect
      .poll(() => page.getByTestId('generate-progress').innerText(), { timeout: 120_000 })
      .toContain('denoising');
    await page.getByTestId('cancel-button').click();
    expect(await settled(page, 'generate-status')).toBe('error');
    expect(await page.getByTestId('generate-error').innerText()).toBe('generation was cancelled');
    expect(await page.getByTestId('dataset-summary').innerText()).toContain('2 classes');
    expect(await page.getByTestId('generate-button').isEnabled()).toBe(true);
  });
});
