// The page's speed in Debian's Chromium, the way a visitor meets it: a folder
// of 10 classes × 20 images (drawn here, seeded) plus 10 held-out images a
// class, dropped on the production build, 8 head samples, 50 DDIM steps.
// Per run: the page's stage times (features, encode, denoise, decode, refine),
// the backend each part ran on, the held-out accuracy of generated + refined
// heads and of the Teachable-Machine-style head the page trains on the spot
// (100 Adam epochs), and that head's training time. Runs: wasm; "auto" in a
// browser whose WebGPU adapter is software (it must not be slower than 1.2×
// the fastest); the generator on that WebGPU adapter with features on wasm.
// Then 1,000 images (10 × 100) on wasm, sampling the browser's resident
// memory: the page reads a batch of images at a time, so it stays bounded.
// Writes bench/BROWSER.md and bench/browser.json.
//
//   npm run bench:browser [-- --quick]   (--quick: 3 classes × 5 images, 2 samples, 5 steps, wasm; CI)

import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium, type Browser } from 'playwright-core';
import { format, resolveConfig } from 'prettier';
import sharp from 'sharp';
import { build, preview } from 'vite';
import { Mulberry32 } from '../engine/rng';

const repoRoot = resolve(import.meta.dirname, '../..');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARGS = ['--no-sandbox', '--disable-background-networking', '--disable-component-update'];

interface Sizes {
  classes: number;
  images: number;
  held: number;
  samples: number;
  steps: number;
}

/** A class folder of seeded images: each class a colour and a shape, on noisy backgrounds. */
async function drawFolder(root: string, sizes: { classes: number; images: number }, seed: number) {
  const rng = new Mulberry32(seed);
  const size = 64;
  for (let c = 0; c < sizes.classes; c++) {
    const dir = join(root, `class-${String(c).padStart(2, '0')}`);
    mkdirSync(dir, { recursive: true });
    const hue = [(c * 97) % 256, (c * 57 + 80) % 256, (c * 31 + 160) % 256];
    for (let k = 0; k < sizes.images; k++) {
      const pixels = Buffer.alloc(size * size * 3);
      const cx = 16 + rng.uniform() * 32;
      const cy = 16 + rng.uniform() * 32;
      const r = 8 + rng.uniform() * 10;
      for (let y = 0; y < size; y++)
        for (let x = 0; x < size; x++) {
          const inside =
            c % 2 === 0
              ? (x - cx) ** 2 + (y - cy) ** 2 < r * r
              : Math.abs(x - cx) < r && Math.abs(y - cy) < r;
          for (let ch = 0; ch < 3; ch++) {
            const base = inside ? hue[ch]! : 200;
            pixels[(y * size + x) * 3 + ch] = Math.max(0, Math.min(255, base + 30 * rng.normal()));
          }
        }
      await sharp(pixels, { raw: { width: size, height: size, channels: 3 } })
        .png()
        .toFile(join(dir, `${k}.png`));
    }
  }
}

/** Resident memory of every Chromium process, in MB (sums the browser, renderer and GPU processes). */
function chromiumRssMb(): number {
  const out = execFileSync('ps', ['-C', 'chromium', '-o', 'rss='], { encoding: 'utf8' });
  return out
    .split('\n')
    .map(Number)
    .filter((v) => v > 0)
    .reduce((a, b) => a + b / 1024, 0);
}

interface RunResult {
  name: string;
  url: string;
  backend: string;
  featureBackend: string;
  timingsMs: Record<string, number>;
  wallMs: number;
  accuracy: Record<string, number>;
  trainedHeadMs: number | null;
  peakRssMb?: number;
}

async function run(
  browser: Browser,
  appUrl: string,
  name: string,
  query: string,
  support: string,
  held: string | null,
  sizes: Sizes,
  sampleMemory = false,
): Promise<RunResult> {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  try {
    await page.goto(`${appUrl}${query}`);
    await page.getByTestId('dataset-input').setInputFiles(support);
    if (held !== null) await page.getByTestId('query-input').setInputFiles(held);
    await page.getByTestId('dataset-summary').waitFor();
    await page.getByTestId('samples-input').fill(String(sizes.samples));
    await page.getByTestId('steps-input').fill(String(sizes.steps));
    let peak = 0;
    const timer = sampleMemory
      ? setInterval(() => (peak = Math.max(peak, chromiumRssMb())), 1000)
      : undefined;
    const started = performance.now();
    await page.getByTestId('generate-button').click();
    const status = page.getByTestId('generate-status');
    for (;;) {
      const state = await status.getAttribute('data-status');
      if (state === 'done') break;
      if (state === 'error') throw new Error(`${name}: ${await status.innerText()}`);
      await page.waitForTimeout(250);
    }
    const wallMs = performance.now() - started;
    if (timer !== undefined) clearInterval(timer);
    const timings = JSON.parse(
      (await page.getByTestId('generate-timings').getAttribute('data-timings')) ?? '{}',
    ) as Record<string, number>;
    const backend = (await page.getByTestId('generate-backend').innerText()).trim();
    const text = await page.getByTestId('generate-timings').innerText();
    const featureBackend = /features on ([^)]+)\)/.exec(text)?.[1] ?? '?';
    const accuracy: Record<string, number> = {};
    let trainedHeadMs: number | null = null;
    if (held !== null)
      for (const row of await page.getByTestId('evaluation-table').locator('tbody tr').all()) {
        const id = (await row.getAttribute('data-testid'))!.replace('evaluation-', '');
        accuracy[id] = Number(await row.getAttribute('data-accuracy'));
        const ms = await row.getAttribute('data-ms');
        if (ms !== null) trainedHeadMs = Number(ms);
      }
    if (errors.length > 0) throw new Error(`${name}: page errors ${errors.join('; ')}`);
    return {
      name,
      url: query,
      backend,
      featureBackend,
      timingsMs: timings,
      wallMs,
      accuracy,
      trainedHeadMs,
      ...(sampleMemory ? { peakRssMb: peak } : {}),
    };
  } finally {
    await page.close();
  }
}

const afterFeatures = (t: Record<string, number>) =>
  (t.encode ?? 0) + (t.denoise ?? 0) + (t.decode ?? 0) + (t.refine ?? 0);

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false } } });
  const quick = values.quick;
  const sizes: Sizes = quick
    ? { classes: 3, images: 5, held: 3, samples: 2, steps: 5 }
    : { classes: 10, images: 20, held: 10, samples: 8, steps: 50 };
  const scratch = mkdtempSync(join(tmpdir(), 'd2nwg-bench-'));
  const support = join(scratch, 'support');
  const held = join(scratch, 'held');
  await drawFolder(support, sizes, 1);
  await drawFolder(held, { classes: sizes.classes, images: sizes.held }, 2);
  process.env.NODE_ENV = 'production';
  await build({ root: repoRoot, mode: 'production', logLevel: 'warn' });
  const server = await preview({
    root: repoRoot,
    preview: { host: '127.0.0.1', port: 0, strictPort: false },
  });
  const appUrl = server.resolvedUrls!.local[0]!;
  const results: RunResult[] = [];
  let baselineRss = 0;
  try {
    const plain = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
    try {
      results.push(await run(plain, appUrl, 'wasm', '?backend=wasm', support, held, sizes));
    } finally {
      await plain.close();
    }
    if (!quick) {
      const gpu = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        args: [...ARGS, '--enable-unsafe-webgpu'],
      });
      try {
        results.push(
          await run(
            gpu,
            appUrl,
            'auto (software WebGPU adapter present)',
            '',
            support,
            held,
            sizes,
          ),
        );
        results.push(
          await run(
            gpu,
            appUrl,
            'generator on WebGPU, features on wasm',
            '?backend=webgpu&features=wasm',
            support,
            held,
            sizes,
          ),
        );
      } finally {
        await gpu.close();
      }
      const many = join(scratch, 'many');
      await drawFolder(many, { classes: 10, images: 100 }, 3);
      const browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        args: ARGS,
      });
      try {
        const page = await browser.newPage();
        await page.goto(`${appUrl}?backend=wasm`);
        await page.waitForTimeout(2000);
        baselineRss = chromiumRssMb();
        await page.close();
        results.push(
          await run(
            browser,
            appUrl,
            '1,000 images (10 × 100, every third held out), wasm',
            '?backend=wasm',
            many,
            null,
            { ...sizes, samples: 2, steps: 10 },
            true,
          ),
        );
      } finally {
        await browser.close();
      }
    }
  } finally {
    await server.close();
  }

  const version = execFileSync(CHROMIUM, ['--version'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const machine = `${cpus()[0]?.model ?? 'unknown CPU'}, ${availableParallelism()} threads, ${version.trim()}`;
  const out = join(repoRoot, 'bench');
  mkdirSync(out, { recursive: true });
  const name = quick ? 'browser-quick' : 'browser';
  const json = JSON.stringify({ machine, sizes, quick, baselineRssMb: baselineRss, results });
  const jsonPath = join(out, `${name}.json`);
  const style = await resolveConfig(jsonPath);
  writeFileSync(jsonPath, await format(json, { ...style, filepath: jsonPath }));
  const ms = (v: number | undefined) => (v === undefined ? '–' : v.toFixed(0));
  const pct = (v: number | undefined) => (v === undefined ? '–' : `${(100 * v).toFixed(1)}%`);
  const timed = results.filter((r) => r.peakRssMb === undefined);
  const fastest = Math.min(...timed.map((r) => afterFeatures(r.timingsMs)));
  const lines = [
    `# Browser benchmark (${quick ? 'quick' : 'full'})`,
    '',
    `${sizes.classes} classes × ${sizes.images} drawn images plus ${sizes.held} held out a class, ${sizes.samples} head samples, ` +
      `${sizes.steps} DDIM steps, dropped on the production build in headless Chromium. ${machine}. ` +
      `Rebuild: \`npm run bench:browser${quick ? ' -- --quick' : ''}\`.`,
    '',
    '| run | generator on | features on | features ms | encode ms | denoise ms | decode ms | refine ms | after features ms | ÷ fastest | generated + refined | head trained here | its training ms | training ÷ generation |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...timed.map((r) => {
      const t = r.timingsMs;
      const after = afterFeatures(t);
      return (
        `| ${r.name} | ${r.backend} | ${r.featureBackend} | ${ms(t.features)} | ${ms(t.encode)} | ${ms(t.denoise)} | ` +
        `${ms(t.decode)} | ${ms(t.refine)} | ${ms(after)} | ${(after / fastest).toFixed(2)} | ` +
        `${pct(r.accuracy['generated-refined'])} | ${pct(r.accuracy['trained-head'])} | ${ms(r.trainedHeadMs ?? undefined)} | ` +
        `${r.trainedHeadMs === null ? '–' : (r.trainedHeadMs / after).toFixed(2)} |`
      );
    }),
    '',
    ...results
      .filter((r) => r.peakRssMb !== undefined)
      .map(
        (r) =>
          `${r.name}: features ${ms(r.timingsMs.features)} ms, whole run ${ms(r.wallMs)} ms; peak resident memory of all ` +
          `Chromium processes ${r.peakRssMb!.toFixed(0)} MB (${baselineRss.toFixed(0)} MB with the page open and idle).`,
      ),
    '',
  ];
  writeFileSync(
    join(out, `${name === 'browser' ? 'BROWSER' : 'BROWSER-QUICK'}.md`),
    lines.join('\n'),
  );
  process.stdout.write(lines.join('\n'));
}

await main();
