// A second visit with the network off still generates: the service worker
// (public/sw.js) keeps the app shell on install and every model file it fetched.

import { copyFileSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { launchChromium, recordPageErrors } from './browser';

const fixtures = resolve(import.meta.dirname, '../models/fixtures/images');

function folder(): string {
  const root = join(mkdtempSync(join(tmpdir(), 'd2nwg-offline-')), 'pets');
  for (const [name, file] of [
    ['cats', 'tall.png'],
    ['dogs', 'wide.png'],
  ] as const) {
    mkdirSync(join(root, name), { recursive: true });
    copyFileSync(join(fixtures, file), join(root, name, file));
  }
  return root;
}

async function generate(page: Page): Promise<string> {
  await page.getByTestId('dataset-input').setInputFiles(folder());
  await page.getByTestId('samples-input').fill('1');
  await page.getByTestId('steps-input').fill('2');
  await page.getByTestId('generate-button').click();
  const status = page.getByTestId('generate-status');
  await expect
    .poll(() => status.getAttribute('data-status'), { timeout: 60_000 })
    .toMatch(/^(done|error)$/);
  expect(await status.getAttribute('data-status'), await status.innerText()).toBe('done');
  return status.innerText();
}

describe('offline, Chromium without WebGPU', () => {
  let browser: Browser;
  let context: BrowserContext;
  beforeAll(async () => {
    browser = await launchChromium({ webgpu: false });
    context = await browser.newContext();
  });
  afterAll(() => browser?.close());

  it('generates on a second visit with the network off, and clears its cache on request', async () => {
    const url = `${inject('appUrl')}?backend=wasm`;
    const first = await context.newPage();
    const errors = recordPageErrors(first);
    await first.goto(url);
    await expect
      .poll(() => first.getByTestId('offline-cache').getAttribute('data-state'), {
        timeout: 60_000,
      })
      .toBe('controlled');
    expect(await generate(first)).toContain('1 heads for 2 classes');
    await first.close();

    await context.setOffline(true);
    const second = await context.newPage();
    errors.push(...recordPageErrors(second));
    await second.goto(url);
    expect(await generate(second)).toContain('1 heads for 2 classes');
    await second.getByTestId('clear-cache').click();
    await expect
      .poll(() => second.getByTestId('offline-cache').getAttribute('data-state'))
      .toBe('cleared');
    expect(errors).toEqual([]);
    await context.setOffline(false);
  });
});
