import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { checkedPages, launchChromium, openDiagnostics, settled } from './browser';

const sliceDir = resolve(import.meta.dirname, '../models/release/slice');
const manifest = JSON.parse(readFileSync(resolve(sliceDir, 'manifest.json'), 'utf8')) as {
  max_abs_error: number;
  trace_file: string;
};
const trace = JSON.parse(readFileSync(resolve(sliceDir, manifest.trace_file), 'utf8')) as {
  output: { data: number[] };
};

async function runSliceInPage(page: Page, backend: string) {
  await page.goto(`${inject('appUrl')}?backend=${backend}`);
  await openDiagnostics(page);
  const status = page.getByTestId('slice-status');
  await expect
    .poll(() => status.getAttribute('data-status'), { timeout: 90_000 })
    .toMatch(/^(done|error)$/);
  return status;
}

async function pageOutput(page: Page): Promise<number[]> {
  return JSON.parse(await page.getByTestId('slice-output').innerText()) as number[];
}

function maxAbsError(actual: number[], expected: number[]): number {
  expect(actual).toHaveLength(expected.length);
  return Math.max(...actual.map((v, i) => Math.abs(v - (expected[i] ?? NaN))));
}

describe('runtime slice in the page, Chromium with WebGPU exposed', () => {
  let browser: Browser;
  const pages = checkedPages(() => browser);
  beforeAll(async () => {
    browser = await launchChromium({ webgpu: true });
  });
  afterAll(() => browser?.close());

  for (const backend of ['webgpu', 'wasm'] as const) {
    it(`runs on ${backend} when forced, matches PyTorch, and shows the backend`, async () => {
      const { page, errors } = await pages.open();
      const status = await runSliceInPage(page, backend);
      const shown = await status.innerText();
      expect(await status.getAttribute('data-status'), `${shown}\n${errors.join('\n')}`).toBe(
        'done',
      );
      await expect
        .poll(() => page.getByTestId('slice-backend').getAttribute('data-backend'))
        .toBe(backend);
      expect(await page.getByTestId('slice-backend').innerText()).toBe(backend);
      expect(await page.getByTestId('slice-verdict').innerText()).toBe('match');
      const error = maxAbsError(await pageOutput(page), trace.output.data);
      expect(error).toBeLessThanOrEqual(manifest.max_abs_error);
    });
  }

  it('auto passes over the software WebGPU adapter for wasm, and says why', async () => {
    // Chromium here has only SwiftShader, a software adapter, which runs these graphs
    // tens of times slower than wasm: auto must not take it (issue 16).
    const { page } = await pages.open();
    await runSliceInPage(page, 'auto');
    const backend = page.getByTestId('slice-backend');
    expect(await backend.getAttribute('data-backend')).toBe('wasm');
    expect(await backend.innerText()).toMatch(
      /^wasm \(webgpu skipped: the WebGPU adapter is (software|a fallback).*; wasm is faster\)$/,
    );
  });

  it('times each backend on the probe and states the verdict', async () => {
    const { page } = await pages.open();
    await page.goto(inject('appUrl'));
    await openDiagnostics(page);
    await page.getByTestId('measure-backends').click();
    expect(await settled(page, 'speed-status', 120_000)).toBe('done');
    expect(await page.getByTestId('speed-verdict').innerText()).toMatch(
      /^(wasm|webgpu): measured \d+\.\d× faster than (this WebGPU adapter|wasm) on a probe \([\d.]+ against [\d.]+ ms a run\); the probe took \d+ ms\.$/,
    );
    // The fallback adapter is still passed over without a probe.
    expect(await page.getByTestId('speed-auto').innerText()).toMatch(
      /^wasm \(webgpu skipped: the WebGPU adapter is (software|a fallback)/,
    );
    for (const backend of ['webgpu', 'wasm'])
      expect(
        Number(await page.getByTestId(`speed-${backend}`).getAttribute('data-gflops')),
      ).toBeGreaterThan(0);
  });
});

describe('runtime slice in the page, Chromium without WebGPU', () => {
  let browser: Browser;
  const pages = checkedPages(() => browser);
  beforeAll(async () => {
    browser = await launchChromium({ webgpu: false });
  });
  afterAll(() => browser?.close());

  it('auto falls back to wasm and says why WebGPU was skipped', async () => {
    const { page } = await pages.open();
    await runSliceInPage(page, 'auto');
    const backend = page.getByTestId('slice-backend');
    expect(await backend.getAttribute('data-backend')).toBe('wasm');
    expect(await backend.innerText()).toMatch(/^wasm \(webgpu skipped: .*WebGPU.*\)$/);
    expect(maxAbsError(await pageOutput(page), trace.output.data)).toBeLessThanOrEqual(
      manifest.max_abs_error,
    );
  });

  it('forcing WebGPU shows a clear error in the page instead of crashing', async () => {
    const { page } = await pages.open();
    const status = await runSliceInPage(page, 'webgpu');
    expect(await status.getAttribute('data-status')).toBe('error');
    expect(await page.getByTestId('slice-error').innerText()).toMatch(
      /^Could not run on webgpu: no backend could run the model \(asked for webgpu\): webgpu: .*WebGPU/,
    );
  });
});
