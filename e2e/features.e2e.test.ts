import { readdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { cosineSimilarity, maxAbsDifference } from '../src/engine/compare';
import { checkedPages, launchChromium, openDiagnostics } from './browser';

const fixturesDir = resolve(import.meta.dirname, '../models/fixtures');
const imageNames = readdirSync(resolve(fixturesDir, 'images')).sort();
const nodeTrace = JSON.parse(readFileSync(resolve(fixturesDir, 'backbone-trace.json'), 'utf8')) as {
  features: Record<string, number[]>;
};

// Page and Node decode the same PNG bytes and share preprocessing; what differs
// is the kernels (WebGPU in Chromium vs wasm in Node) and, for semi-transparent
// pixels, the canvas's premultiplied storage, which rounds their colour.
// Measured (largest |page − node| / largest |node|): wasm 1.3e-7, WebGPU 4.4e-6
// on opaque images; 2.1e-3 on both for the semi-transparent glyph.
const TOLERANCE = { opaque: 1e-4, semiTransparent: 5e-3 };
const SEMI_TRANSPARENT = new Set(['glyph-rgba.png']);
const MIN_COSINE = 0.99999;

function scaledMaxDifference(actual: number[], expected: number[]): number {
  return maxAbsDifference(actual, expected) / Math.max(...expected.map(Math.abs));
}

interface DownloadedFeatures {
  backend: string;
  feature_dim: number;
  images: { name: string; features: number[] }[];
}

async function extractInPage(
  page: Page,
  backend: string,
  names: string[],
): Promise<DownloadedFeatures> {
  await page.goto(`${inject('appUrl')}?backend=${backend}`);
  await openDiagnostics(page);
  await page
    .getByTestId('features-input')
    .setInputFiles(names.map((name) => resolve(fixturesDir, 'images', name)));
  const status = page.getByTestId('features-status');
  await expect
    .poll(() => status.getAttribute('data-status'), { timeout: 120_000 })
    .toMatch(/^(done|error)$/);
  expect(await status.getAttribute('data-status'), await status.innerText()).toBe('done');
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('button', { name: 'Download features.json' }).click(),
  ]);
  const path = await download.path();
  return JSON.parse(readFileSync(path, 'utf8')) as DownloadedFeatures;
}

describe('backbone features in the page match Node', () => {
  let browser: Browser;
  const pages = checkedPages(() => browser);
  beforeAll(async () => {
    browser = await launchChromium({ webgpu: true });
  });
  afterAll(() => browser?.close());

  // On WebGPU (a software adapter here) one opaque and the semi-transparent image: each image
  // costs seconds there, and these two cover both tolerances.
  const cases = { webgpu: ['tiny.png', 'glyph-rgba.png'].sort(), wasm: imageNames };
  for (const backend of ['webgpu', 'wasm'] as const) {
    it(`on ${backend}`, async () => {
      const { page, errors } = await pages.open();
      const names = cases[backend];
      const result = await extractInPage(page, backend, names);
      expect(result.backend, errors.join('\n')).toBe(backend);
      expect(await page.getByTestId('features-backend').getAttribute('data-backend')).toBe(backend);
      expect(result.images.map((i) => i.name)).toEqual(names);
      for (const image of result.images) {
        const expected = nodeTrace.features[image.name] ?? [];
        expect(image.features).toHaveLength(result.feature_dim);
        expect(cosineSimilarity(image.features, expected), image.name).toBeGreaterThan(MIN_COSINE);
        const tolerance = SEMI_TRANSPARENT.has(image.name)
          ? TOLERANCE.semiTransparent
          : TOLERANCE.opaque;
        expect(scaledMaxDifference(image.features, expected), image.name).toBeLessThan(tolerance);
      }
    });
  }

  it('names a file that is not an image instead of failing silently', async () => {
    const { page } = await pages.open();
    await page.goto(`${inject('appUrl')}?backend=wasm`);
    await openDiagnostics(page);
    await page
      .getByTestId('features-input')
      .setInputFiles([
        { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('not an image') },
      ]);
    const status = page.getByTestId('features-status');
    await expect.poll(() => status.getAttribute('data-status'), { timeout: 60_000 }).toBe('error');
    expect(await page.getByTestId('features-error').innerText()).toMatch(
      /^notes\.txt: not a readable image/,
    );
  });
});
