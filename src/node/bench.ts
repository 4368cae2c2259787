// Generation speed in Node (onnxruntime-node, cpu), per family: 10 classes ×
// 20 images of seeded unit-norm features, 8 samples, 50 DDIM steps, the
// release's other defaults. Writes bench/REPORT.md and bench/report.json.
//
//   npm run bench [-- --repeats N]

import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { CnnGenerator, loadCnnGeneratorFiles } from '../engine/cnn-generator';
import { HeadGenerator, loadHeadGeneratorFiles } from '../engine/head-generator';
import { directorySource, nodeHost } from '../engine/node-host';
import { Mulberry32 } from '../engine/rng';
import { selectBackend } from '../engine/runtime';

const repoRoot = resolve(import.meta.dirname, '../..');
const release = join(repoRoot, 'models/release');
const CLASSES = 10;
const IMAGES = 20;
const SAMPLES = 8;
const STEPS = 50;

interface Row {
  family: string;
  arch: string;
  graphs: Record<string, number>;
  encode: number[];
  denoise: number[];
  decode: number[];
  peakRssMb: number;
}

function support(dim: number): Float32Array[] {
  const rng = new Mulberry32(1);
  return Array.from({ length: CLASSES }, () =>
    Float32Array.from({ length: IMAGES * dim }, () => rng.normal()),
  );
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { repeats: { type: 'string', default: '3' } } });
  const repeats = Number(values.repeats);
  const rows: Row[] = [];
  const options = { samples: SAMPLES, steps: STEPS, seed: 0 };
  let peak = 0;
  const track = () => (peak = Math.max(peak, process.memoryUsage().rss / 2 ** 20));

  const headFiles = await loadHeadGeneratorFiles(directorySource(join(release, 'head')));
  const head = await selectBackend('cpu', nodeHost, headFiles.decoder);
  await head.probeSession.release();
  const headGenerator = await HeadGenerator.create(headFiles, head.selected);
  const headRow: Row = {
    family: 'head',
    arch: headFiles.manifest.layout.architecture,
    graphs: Object.fromEntries(
      Object.entries(headFiles.manifest.graphs).map(([k, g]) => [k, g.bytes]),
    ),
    encode: [],
    denoise: [],
    decode: [],
    peakRssMb: 0,
  };
  const features = support(headFiles.manifest.backbone.feature_dim);
  for (let r = 0; r < repeats + 1; r++) {
    const out = await headGenerator.generate(features, options);
    track();
    if (r === 0) continue; // warm-up
    headRow.encode.push(out.timingsMs.encode);
    headRow.denoise.push(out.timingsMs.denoise);
    headRow.decode.push(out.timingsMs.decode);
  }
  await headGenerator.release();
  headRow.peakRssMb = peak;
  rows.push(headRow);

  const cnnFiles = await loadCnnGeneratorFiles(directorySource(join(release, 'cnn')));
  const cnn = await selectBackend('cpu', nodeHost, cnnFiles.decoder);
  await cnn.probeSession.release();
  const cnnGenerator = await CnnGenerator.create(cnnFiles, cnn.selected);
  for (const arch of cnnGenerator.archs) {
    const row: Row = {
      family: 'cnn',
      arch,
      graphs: Object.fromEntries(
        Object.entries(cnnFiles.manifest.graphs).map(([k, g]) => [k, g.bytes]),
      ),
      encode: [],
      denoise: [],
      decode: [],
      peakRssMb: 0,
    };
    for (let r = 0; r < repeats + 1; r++) {
      const out = await cnnGenerator.generate(arch, features, options);
      track();
      if (r === 0) continue;
      row.encode.push(out.timingsMs.encode);
      row.denoise.push(out.timingsMs.denoise);
      row.decode.push(out.timingsMs.decode);
    }
    row.peakRssMb = peak;
    rows.push(row);
  }
  await cnnGenerator.release();

  const machine = `${cpus()[0]?.model ?? 'unknown CPU'}, ${availableParallelism()} threads available, Node ${process.version}`;
  const out = join(repoRoot, 'bench');
  mkdirSync(out, { recursive: true });
  writeFileSync(
    join(out, 'report.json'),
    `${JSON.stringify({ machine, classes: CLASSES, images: IMAGES, samples: SAMPLES, steps: STEPS, repeats, rows }, null, 1)}\n`,
  );
  const mb = (b: number) => (b / 1e6).toFixed(1);
  const ms = (v: number[]) => median(v).toFixed(0);
  const lines = [
    '# Generation benchmark (Node, onnxruntime-node cpu)',
    '',
    `${CLASSES} classes × ${IMAGES} images (seeded features), ${SAMPLES} samples, ${STEPS} DDIM steps, guidance and ` +
      `temperature at the release defaults; median of ${repeats} runs after one warm-up. ${machine}. ` +
      'Rebuild: `npm run bench`.',
    '',
    '| family | arch | encoder MB | denoiser MB | decoder MB | encode ms | denoise ms | decode ms | total ms | peak RSS MB |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.family} | ${r.arch} | ${mb(r.graphs.encoder!)} | ${mb(r.graphs.denoiser!)} | ${mb(r.graphs.decoder!)} | ` +
        `${ms(r.encode)} | ${ms(r.denoise)} | ${ms(r.decode)} | ` +
        `${(median(r.encode) + median(r.denoise) + median(r.decode)).toFixed(0)} | ${r.peakRssMb.toFixed(0)} |`,
    ),
    '',
  ];
  writeFileSync(join(out, 'REPORT.md'), lines.join('\n'));
  process.stdout.write(lines.join('\n'));
}

await main();
