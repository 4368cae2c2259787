// Debian's Chromium, started the way these machines need: headless, no sandbox
// (root), no background network traffic, a fresh profile (Playwright makes one
// per launch). Nothing here downloads a browser.

import { chromium, type Browser, type Locator, type Page } from 'playwright-core';
import { afterEach, expect, inject } from 'vitest';

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

const BASE_ARGS = [
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

/** With `webgpu`, Chromium exposes a (SwiftShader) WebGPU adapter even without a GPU. */
export function launchChromium({ webgpu }: { webgpu: boolean }): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: webgpu ? [...BASE_ARGS, '--enable-unsafe-webgpu'] : BASE_ARGS,
  });
}

/** Collects console errors and uncaught page errors, for assertions and for failure output. */
export function recordPageErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(`pageerror: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(`console: ${message.text()}`);
  });
  return errors;
}

interface OpenedPage {
  page: Page;
  errors: string[];
  allowed: RegExp[];
}

/**
 * Pages for the current test, each recording console errors, uncaught page
 * errors and requests to any origin but the app's. After each test every page
 * is closed, and the test fails if any of them logged an error that it did not
 * declare as expected, or reached outside the app's origin.
 */
export function checkedPages(browser: () => Browser) {
  let opened: OpenedPage[] = [];
  afterEach(async () => {
    const current = opened;
    opened = [];
    const unexpected = current.flatMap(({ errors, allowed }) =>
      errors.filter((e) => !allowed.some((pattern) => pattern.test(e))),
    );
    await Promise.all(current.map(({ page }) => page.close().catch(() => undefined)));
    expect(unexpected, 'console errors during the test').toEqual([]);
  });
  return {
    async open({ allowErrors = [] }: { allowErrors?: RegExp[] } = {}): Promise<OpenedPage> {
      const page = await browser().newPage();
      const entry = { page, errors: recordPageErrors(page), allowed: allowErrors };
      const own = new URL(inject('appUrl')).origin;
      page.on('request', (request) => {
        const url = new URL(request.url());
        if (!['blob:', 'data:'].includes(url.protocol) && url.origin !== own)
          entry.errors.push(`request outside the app's origin: ${request.url()}`);
      });
      opened.push(entry);
      return entry;
    },
  };
}

/** Opens the page's collapsed Diagnostics panel (runtime check, backbone features, trace checks). */
export async function openDiagnostics(page: Page): Promise<void> {
  const panel = page.getByTestId('diagnostics');
  if ((await panel.getAttribute('open')) === null) await panel.locator('summary').click();
}

/** Waits until the status element `testId` reads done or error, and returns which. */
export async function settled(page: Page, testId: string, timeout = 120_000): Promise<string> {
  const status = page.getByTestId(testId);
  await expect
    .poll(() => status.getAttribute('data-status'), { timeout })
    .toMatch(/^(done|error)$/);
  return (await status.getAttribute('data-status'))!;
}

/** Waits for the page's generation to finish; fails with the page's own words when it did not. */
export async function generationDone(page: Page, timeout = 100_000): Promise<void> {
  const state = await settled(page, 'generate-status', timeout);
  expect(state, await page.getByTestId('generate-status').innerText()).toBe('done');
}

/** Clicks "Fine-tune each start" and waits for all `starts` curves to reach epoch 10; their names. */
export async function fineTuneEveryStart(page: Page, starts: number): Promise<string[]> {
  await page.getByRole('button', { name: 'Fine-tune each start' }).click();
  const finals = page.getByTestId('fine-tune-table').locator('tbody tr');
  await expect
    .poll(
      async () => (await finals.allInnerTexts()).filter((t) => t.includes('(epoch 10)')).length,
      { timeout: 60_000 },
    )
    .toBe(starts);
  return finals.locator('th').allInnerTexts();
}

/**
 * The README's pictures: `locator` as a palette PNG (a third of the bytes of a
 * full-colour one; every clone carries these files).
 */
export async function saveScreenshot(locator: Locator, path: string): Promise<void> {
  const { default: sharp } = await import('sharp');
  await sharp(await locator.screenshot())
    .png({ palette: true, effort: 10 })
    .toFile(path);
}
