// Generation speed in Node (onnxruntime-node, cpu), per family, arch and shipped
// graph precision: 10 classes ×
// 20 images of seeded unit-norm features, 8 samples, 50 DDIM steps, the
// release's other defaults. Writes bench/REPORT.md and bench/report.json.
//
//   npm run bench:node [-- --repeats N]   (npm run bench: this, then bench:browser)

import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { format, resolveConfig } from 'prettier';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import {
  describeGenerator,
  FAMILIES,
  GeneratorRegistry,
  readFoldPrior,
  readGeneratorManifest,
  type Family,
} from '../engine/generators';
import { directorySource, nodeHost } from '../engine/node-host';
import { drawFolder } from './drawn-folder';
import { datasetFeatures, generateWeights, type ClassFeatures } from '../engine/pipeline';
import { readClassFolder } from './class-folder';
import { classImages, nodeExtractor } from './cli';
import { headOfNetwork, labelled } from '../engine/heads';
import {
  describeRefinement,
  refineHead,
  refineHeads,
  solverTolerance,
  type FoldPrior,
  type RefineSpec,
} from '../engine/refine';
import { Mulberry32 } from '../engine/rng';
import type { Precision } from '../engine/sampling';

const repoRoot = resolve(import.meta.dirname, '../..');
const release = join(repoRoot, 'models/release');
const CLASSES = 10;
const IMAGES = 20;
const SAMPLES = 8;
const STEPS = 50;

interface Row {
  family: string;
  arch: string;
  precision: Precision;
  graphs: Record<string, number>;
  encode: number[];
  denoise: number[];
  decode: number[];
  peakRssMb: number;
}

function support(dim: number): ClassFeatures[] {
  const rng = new Mulberry32(1);
  return Array.from({ length: CLASSES }, (_, c) => ({
    name: `class ${c}`,
    features: Float32Array.from({ length: IMAGES * dim }, () => rng.normal()),
  }));
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function timed(
  run: () => Promise<{ timingsMs: { encode: number; denoise: number; decode: number } }>,
  repeats: number,
  row: Row,
  track: () => void,
): Promise<void> {
  for (let r = 0; r < repeats + 1; r++) {
    const out = await run();
    track();
    if (r === 0) continue; // warm-up
    row.encode.push(out.timingsMs.encode);
    row.denoise.push(out.timingsMs.denoise);
    row.decode.push(out.timingsMs.decode);
  }
}

const REFINE_CLASSES = 20;
const REFINE_IMAGES = 20;

/**
 * Refine timings on the backbone features of a drawn folder (the browser
 * benchmark's pictures, 20 classes × 20 images), refining the heads the
 * release generates for them: one head at the λ the release's rule picks for
 * this support and at the grid's weakest λ (the slowest solve), and the whole
 * refine stage of a generation (the rule, then every one of SAMPLES heads),
 * each solve stopped at the manifest's tolerance.
 */
async function timeRefine(
  repeats: number,
  spec: RefineSpec,
  foldPrior: FoldPrior,
  generators: GeneratorRegistry,
): Promise<{ one: number[]; weakest: number[]; stage: number[]; lambda: number; rule: string }> {
  const root = mkdtempSync(join(tmpdir(), 'd2nwg-bench-'));
  let perClass: Float32Array[];
  try {
    await drawFolder(root, { classes: REFINE_CLASSES, images: REFINE_IMAGES }, 3);
    const extractor = nodeExtractor();
    try {
      ({ perClass } = await datasetFeatures(classImages(readClassFolder(root)), extractor));
    } finally {
      extractor.dispose();
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  const dim = perClass[0]!.length / REFINE_IMAGES;
  const generated = await generateWeights(
    {
      family: 'head',
      precision: 'fp32',
      backend: 'cpu',
      options: { samples: SAMPLES, seed: 0 },
      data: { features: perClass.map((features, c) => ({ name: `class ${c}`, features })) },
      onnx: false,
      refine: false,
    },
    { generators },
  );
  const support = labelled(perClass, dim);
  const heads = generated.generated.map((n) => headOfNetwork(n, REFINE_CLASSES, dim));
  const tolerance = solverTolerance(spec, support.labels.length);
  const weakestLambda = Math.min(...spec.lambda_grid);
  const one: number[] = [];
  const weakest: number[] = [];
  const stage: number[] = [];
  let choice = refineHeads(heads, support, REFINE_CLASSES, spec, foldPrior).choice;
  for (let r = 0; r < repeats + 1; r++) {
    let started = performance.now();
    refineHead(heads[0]!, support, { lambda: choice.lambda, tolerance });
    if (r > 0) one.push(performance.now() - started); // the first is a warm-up
    started = performance.now();
    refineHead(heads[0]!, support, { lambda: weakestLambda, tolerance });
    if (r > 0) weakest.push(performance.now() - started);
    started = performance.now();
    choice = refineHeads(heads, support, REFINE_CLASSES, spec, foldPrior).choice;
    if (r > 0) stage.push(performance.now() - started);
  }
  return { one, weakest, stage, lambda: choice.lambda, rule: describeRefinement(choice) };
}

interface CliRun {
  classes: number;
  images: number;
  timings_ms: { features: number; encode: number; denoise: number; decode: number; refine: number };
  refinement: { lambda: number; rule: string; min_images: number } | null;
}

/**
 * `d2nwg generate` on a drawn folder (the browser benchmark's pictures, through
 * the real backbone), as a user runs it: its report.json's stage times. The
 * refine there works on real features, where the seeded ones above leave the
 * generated heads nothing to fix.
 */
async function runCli(classes: number, images: number): Promise<CliRun> {
  const root = mkdtempSync(join(tmpdir(), 'd2nwg-bench-'));
  try {
    const data = join(root, 'data');
    const out = join(root, 'out');
    await drawFolder(data, { classes, images }, 3);
    execFileSync(
      process.execPath,
      [
        join(repoRoot, 'bin/d2nwg.js'),
        'generate',
        '--data',
        data,
        '--out',
        out,
        '--samples',
        String(SAMPLES),
        '--steps',
        String(STEPS),
        '--backend',
        'cpu',
      ],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    );
    // Only the stage times and the refinement: the report also names the (temporary) folders.
    const { timings_ms, refinement } = JSON.parse(
      readFileSync(join(out, 'report.json'), 'utf8'),
    ) as CliRun;
    return { classes, images, timings_ms, refinement };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { repeats: { type: 'string', default: '3' } } });
  const repeats = Number(values.repeats);
  const rows: Row[] = [];
  const options = { samples: SAMPLES, steps: STEPS, seed: 0 };
  let peak = 0;
  const track = () => (peak = Math.max(peak, process.memoryUsage().rss / 2 ** 20));
  const source = (family: Family) => directorySource(join(release, family));
  for (const family of FAMILIES) {
    const manifest = await readGeneratorManifest(family, source(family));
    const description = describeGenerator(manifest);
    const features = support(description.featureDim);
    for (const precision of description.precisions) {
      // One precision's graphs open at a time, as a user's process would hold them.
      const generators = new GeneratorRegistry(nodeHost, source);
      const graphs = Object.fromEntries(
        (['encoder', 'denoiser', 'decoder'] as const).map((g) => [
          g,
          precision === 'fp32' ? manifest.graphs[g].bytes : manifest.variants[precision]![g]!.bytes,
        ]),
      );
      for (const { name: arch } of description.archs) {
        const row: Row = {
          family,
          arch,
          precision,
          graphs,
          encode: [],
          denoise: [],
          decode: [],
          peakRssMb: 0,
        };
        const run = () =>
          generateWeights(
            {
              family,
              arch,
              precision,
              backend: 'cpu',
              options,
              data: { features },
              onnx: false,
              refine: false,
            },
            { generators },
          );
        await timed(run, repeats, row, track);
        row.peakRssMb = peak;
        rows.push(row);
      }
      await generators.releaseAll();
    }
  }

  const headManifest = await readGeneratorManifest('head', source('head'));
  if (headManifest.family !== 'head') throw new Error('release/head holds no head manifest');
  const spec = headManifest.refine;
  const refineGenerators = new GeneratorRegistry(nodeHost, source);
  const refineMs = await timeRefine(
    repeats,
    spec,
    await readFoldPrior(source('head'), headManifest),
    refineGenerators,
  );
  await refineGenerators.releaseAll();
  const cli = [await runCli(10, 20), await runCli(20, 20)];
  const rule =
    REFINE_IMAGES >= spec.cv_min_images
      ? `λ by ${spec.cv_folds}-fold cross-validation over ${spec.lambda_grid.length} values`
      : `λ = ${refineMs.lambda}, the release's calibrated λ for ${REFINE_IMAGES} images a class`;

  const machine = `${cpus()[0]?.model ?? 'unknown CPU'}, ${availableParallelism()} threads available, Node ${process.version}`;
  const out = join(repoRoot, 'bench');
  mkdirSync(out, { recursive: true });
  // Written in the repository's format (prettier), so a fresh report passes `npm run lint` as committed.
  const json = JSON.stringify({
    machine,
    classes: CLASSES,
    images: IMAGES,
    samples: SAMPLES,
    steps: STEPS,
    repeats,
    rows,
    refine: {
      classes: REFINE_CLASSES,
      images: REFINE_IMAGES,
      lambda: refineMs.lambda,
      ms: refineMs.one,
      weakest_lambda: Math.min(...spec.lambda_grid),
      weakest_ms: refineMs.weakest,
      stage_samples: SAMPLES,
      stage_ms: refineMs.stage,
    },
    cli,
  });
  const reportPath = join(out, 'report.json');
  const style = await resolveConfig(reportPath);
  writeFileSync(reportPath, await format(json, { ...style, filepath: reportPath }));
  const mb = (b: number) => (b / 1e6).toFixed(1);
  const ms = (v: number[]) => median(v).toFixed(0);
  const lines = [
    '# Generation benchmark (Node, onnxruntime-node cpu)',
    '',
    `${CLASSES} classes × ${IMAGES} images (seeded features), ${SAMPLES} samples, ${STEPS} DDIM steps, guidance and ` +
      `temperature at the release defaults; median of ${repeats} runs after one warm-up. ${machine}. ` +
      'Rebuild: `npm run bench:node` (`npm run bench` runs it and the browser benchmark).',
    '',
    '| family | arch | graphs | encoder MB | denoiser MB | decoder MB | encode ms | denoise ms | decode ms | total ms | peak RSS MB |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.family} | ${r.arch} | ${r.precision} | ${mb(r.graphs.encoder!)} | ${mb(r.graphs.denoiser!)} | ${mb(r.graphs.decoder!)} | ` +
        `${ms(r.encode)} | ${ms(r.denoise)} | ${ms(r.decode)} | ` +
        `${(median(r.encode) + median(r.denoise) + median(r.decode)).toFixed(0)} | ${r.peakRssMb.toFixed(0)} |`,
    ),
    '',
    `Refine toward the support (src/engine/refine.ts) of the heads the release generates for the backbone ` +
      `features of a drawn folder, ${REFINE_CLASSES} classes × ${REFINE_IMAGES} images, each solve stopped at the manifest's ` +
      `tolerance (sklearn's rule, ${spec.solver_tol}), median of ${refineMs.one.length} runs: one head at the λ ` +
      `the rule picks here (${refineMs.rule}), ${median(refineMs.one).toFixed(0)} ms (issue 13's target: ≤ 500 ms); ` +
      `one head at the grid's weakest λ = ${Math.min(...spec.lambda_grid)}, ` +
      `${median(refineMs.weakest).toFixed(0)} ms; the whole refine stage of a generation ` +
      `(${rule}, then ${SAMPLES} heads), ${median(refineMs.stage).toFixed(0)} ms.`,
    '',
    `\`d2nwg generate\` (one run each, ${SAMPLES} samples, ${STEPS} steps, onnxruntime-node cpu) on drawn folders ` +
      "(the browser benchmark's pictures, src/node/drawn-folder.ts), stage times from its report.json:",
    '',
    '| classes × images | features ms | encode ms | denoise ms | decode ms | refine ms | after features ms | λ |',
    '|---|---|---|---|---|---|---|---|',
    ...cli.map(({ classes, images, timings_ms: t, refinement }) => {
      const after = t.encode + t.denoise + t.decode + t.refine;
      const lambda = refinement === null ? '–' : `${refinement.lambda} (${refinement.rule})`;
      return (
        `| ${classes} × ${images} | ${t.features.toFixed(0)} | ${t.encode.toFixed(0)} | ${t.denoise.toFixed(0)} | ` +
        `${t.decode.toFixed(0)} | ${t.refine.toFixed(0)} | ${after.toFixed(0)} | ${lambda} |`
      );
    }),
    '',
  ];
  writeFileSync(join(out, 'REPORT.md'), lines.join('\n'));
  process.stdout.write(lines.join('\n'));
}

await main();
