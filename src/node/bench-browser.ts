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
// Each timed run ends with the page's "Measure backends" (Diagnostics): a
// large MatMul's GFLOP/s on each backend in that page. With the multiply-adds
// of each generator stage at these sizes (counted from the graphs,
// generation-cost.ts), that gives the stage's FLOP-bound time on the backend
// it ran on, and measured ÷ FLOP-bound says how far from arithmetic-bound it is.
// Writes bench/BROWSER.md and bench/browser.json.
//
//   npm run bench:browser [-- --quick]   (--quick: 3 classes × 5 images, 2 samples, 5 steps, wasm; CI)

import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium, type Browser, type Page } from 'playwright-core';
import { format, resolveConfig } from 'prettier';
import { build, preview } from 'vite';
import { drawFolder } from './drawn-folder';
import { generationCost, type StageCost } from './generation-cost';

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

/** Resident memory of every Chromium process, in MB (sums the browser, renderer and GPU processes). */
function chromiumRssMb(): number {
  const out = execFileSync('ps', ['-C', 'chromium', '-o', 'rss='], { encoding: 'utf8' });
  return out
    .split('\n')
    .map(Number)
    .filter((v) => v > 0)
    .reduce((a, b) => a + b / 1024, 0);
}

/** The page's "Measure backends": what auto takes, the probe's verdict, each backend's speed. */
interface PageSpeeds {
  auto: string;
  verdict: string | null;
  gflops: Record<string, number>;
  probeMsPerRun: Record<string, number>;
}

interface RunResult {
  name: string;
  url: string;
  backend: string;
  /** The backend the generator's graphs ran on (webgpu or wasm). */
  generatorBackend: string;
  featureBackend: string;
  speeds?: PageSpeeds;
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
  // Measuring speeds takes a while on a software adapter; the memory run does not need them.
  const measureSpeeds = !sampleMemory;
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
    const generatorBackend =
      (await page.getByTestId('generate-backend').getAttribute('data-backend')) ?? '?';
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
    const speeds = measureSpeeds ? await pageSpeeds(page, name) : undefined;
    if (errors.length > 0) throw new Error(`${name}: page errors ${errors.join('; ')}`);
    return {
      name,
      url: query,
      backend,
      generatorBackend,
      featureBackend,
      ...(speeds !== undefined ? { speeds } : {}),
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

/** Clicks the page's "Measure backends" (Diagnostics) and reads what it measured. */
async function pageSpeeds(page: Page, name: string): Promise<PageSpeeds> {
  const panel = page.getByTestId('diagnostics');
  if ((await panel.getAttribute('open')) === null) await panel.locator('summary').click();
  await page.getByTestId('measure-backends').click();
  const status = page.getByTestId('speed-status');
  for (;;) {
    const state = await status.getAttribute('data-status');
    if (state === 'done') break;
    if (state === 'error')
      throw new Error(`${name}: measuring backends: ${await status.innerText()}`);
    await page.waitForTimeout(250);
  }
  const gflops: Record<string, number> = {};
  const probeMsPerRun: Record<string, number> = {};
  for (const row of await page.getByTestId('speed-table').locator('tbody tr').all()) {
    const backend = (await row.getAttribute('data-testid'))!.replace('speed-', '');
    const g = await row.getAttribute('data-gflops');
    const p = await row.getAttribute('data-probe-ms');
    if (g !== null) gflops[backend] = Number(g);
    if (p !== null) probeMsPerRun[backend] = Number(p);
  }
  const verdict = page.getByTestId('speed-verdict');
  return {
    auto: (await page.getByTestId('speed-auto').innerText()).trim(),
    verdict: (await verdict.count()) > 0 ? (await verdict.innerText()).trim() : null,
    gflops,
    probeMsPerRun,
  };
}

/** A stage's FLOP-bound time: 2 flops a multiply-add at the backend's large-MatMul rate. */
const flopBoundMs = (multiplyAdds: number, gflops: number) => (2 * multiplyAdds) / (gflops * 1e6);

const GRAPH_STAGES = ['encode', 'denoise', 'decode'] as const;

/** Per stage and for the whole generation (the three graphs): measured, FLOP-bound, their ratio. */
function boundRatios(r: RunResult, costs: readonly StageCost[]) {
  const gflops = r.speeds?.gflops[r.generatorBackend];
  if (gflops === undefined) return null;
  const rows = GRAPH_STAGES.map((stage) => {
    const macs = costs.find((c) => c.stage === stage)?.multiplyAdds ?? 0;
    const measuredMs = r.timingsMs[stage] ?? NaN;
    const boundMs = flopBoundMs(macs, gflops);
    return { stage, multiplyAdds: macs, measuredMs, boundMs, ratio: measuredMs / boundMs };
  });
  const measuredMs = rows.reduce((a, x) => a + x.measuredMs, 0);
  const boundMs = rows.reduce((a, x) => a + x.boundMs, 0);
  const multiplyAdds = rows.reduce((a, x) => a + x.multiplyAdds, 0);
  return {
    backend: r.generatorBackend,
    gflops,
    stages: [
      ...rows,
      { stage: 'generation', multiplyAdds, measuredMs, boundMs, ratio: measuredMs / boundMs },
    ],
  };
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
  // The generator's arithmetic at these sizes (the page's support: every image of the support folder).
  const costs = await generationCost('head', join(repoRoot, 'models/release/head'), sizes);
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
  const timedRuns = results.filter((r) => r.peakRssMb === undefined);
  const bounds = timedRuns.map((r) => ({ run: r.name, ...boundRatios(r, costs) }));
  const json = JSON.stringify({
    machine,
    sizes,
    quick,
    baselineRssMb: baselineRss,
    results,
    multiplyAdds: costs,
    flopBound: bounds,
  });
  const jsonPath = join(out, `${name}.json`);
  const style = await resolveConfig(jsonPath);
  writeFileSync(jsonPath, await format(json, { ...style, filepath: jsonPath }));
  const ms = (v: number | undefined) => (v === undefined ? '–' : v.toFixed(0));
  const pct = (v: number | undefined) => (v === undefined ? '–' : `${(100 * v).toFixed(1)}%`);
  const timed = timedRuns;
  const mmac = (v: number) => (v / 1e6).toFixed(v >= 1e8 ? 0 : 1);
  const ratio = (v: number) =>
    Number.isFinite(v) ? `${v >= 100 ? v.toFixed(0) : v.toFixed(1)}×` : '–';
  const bound = (v: number) => (v >= 10 ? v.toFixed(0) : v.toPrecision(2));
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
    '## Measured ÷ FLOP-bound',
    '',
    `Multiply-adds counted from the release's head graphs at these sizes (MatMul, Gemm, Conv; ` +
      `elementwise nodes left out): ${costs
        .map(
          (c) =>
            `${c.stage} ${mmac(c.multiplyAdds)} M (${c.calls} call${c.calls === 1 ? '' : 's'})`,
        )
        .join(', ')}. ` +
      'FLOP-bound time = 2 × multiply-adds ÷ the GFLOP/s of a large MatMul ' +
      '(the first of 0.27, 2.1 and 17 G multiply-adds whose run takes 100 ms or more) ' +
      'on the same backend in the same page, measured by the ' +
      'page\'s "Measure backends" right after the run. Refinement is not a graph and is left out; ' +
      'the encoder and decoder run once, so whatever a first run costs on a backend lands in them.',
    '',
    '| run | generator on | large MatMul GFLOP/s | encode ms (bound, ÷) | denoise ms (bound, ÷) | decode ms (bound, ÷) | generation ms (bound, ÷) |',
    '|---|---|---|---|---|---|---|',
    ...bounds.map((b) => {
      if (b.stages === undefined) return `| ${b.run} | – | not measured | – | – | – | – |`;
      const cells = b.stages.map(
        (x) => `${ms(x.measuredMs)} (${bound(x.boundMs)}, ${ratio(x.ratio)})`,
      );
      return `| ${b.run} | ${b.backend} | ${b.gflops!.toFixed(1)} | ${cells.join(' | ')} |`;
    }),
    '',
    ...timed
      .filter((r) => r.speeds !== undefined)
      .map(
        (r) =>
          `${r.name}: the page's auto takes ${r.speeds!.auto}` +
          (r.speeds!.verdict === null ? '.' : `; the page's probe: ${r.speeds!.verdict}`) +
          ` Large MatMul: ${Object.entries(r.speeds!.gflops)
            .map(([b, g]) => `${b} ${g.toFixed(1)} GFLOP/s`)
            .join(', ')}.`,
      ),
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
