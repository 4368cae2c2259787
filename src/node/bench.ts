// Generation speed in Node (onnxruntime-node, cpu), per family, arch and shipped
// graph precision: 10 classes ×
// 20 images of seeded unit-norm features, 8 samples, 50 DDIM steps, the
// release's other defaults. Writes bench/REPORT.md and bench/report.json.
//
//   npm run bench [-- --repeats N]

import { mkdirSync, writeFileSync } from 'node:fs';
import { format, resolveConfig } from 'prettier';
import { availableParallelism, cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { CnnGenerator, loadCnnGeneratorFiles } from '../engine/cnn-generator';
import { HeadGenerator, loadHeadGeneratorFiles } from '../engine/head-generator';
import { directorySource, nodeHost } from '../engine/node-host';
import { Mulberry32 } from '../engine/rng';
import { selectBackend } from '../engine/runtime';
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

function support(dim: number): Float32Array[] {
  const rng = new Mulberry32(1);
  return Array.from({ length: CLASSES }, () =>
    Float32Array.from({ length: IMAGES * dim }, () => rng.normal()),
  );
}

function newRow(
  family: string,
  arch: string,
  precision: Precision,
  files: { encoder: Uint8Array; denoiser: Uint8Array; decoder: Uint8Array },
): Row {
  const graphs = {
    encoder: files.encoder.length,
    denoiser: files.denoiser.length,
    decoder: files.decoder.length,
  };
  return { family, arch, precision, graphs, encode: [], denoise: [], decode: [], peakRssMb: 0 };
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

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { repeats: { type: 'string', default: '3' } } });
  const repeats = Number(values.repeats);
  const rows: Row[] = [];
  const options = { samples: SAMPLES, steps: STEPS, seed: 0 };
  let peak = 0;
  const track = () => (peak = Math.max(peak, process.memoryUsage().rss / 2 ** 20));
  const headSource = directorySource(join(release, 'head'));
  const cnnSource = directorySource(join(release, 'cnn'));
  const shipped = async (source: typeof headSource): Promise<Precision[]> => {
    const manifest = JSON.parse(new TextDecoder().decode(await source('manifest.json'))) as {
      variants: Record<string, unknown>;
    };
    return ['fp32', ...(Object.keys(manifest.variants) as Precision[])];
  };

  for (const precision of await shipped(headSource)) {
    const files = await loadHeadGeneratorFiles(headSource, precision);
    const { selected, probeSession } = await selectBackend('cpu', nodeHost, files.decoder);
    await probeSession.release();
    const generator = await HeadGenerator.create(files, selected);
    const row = newRow('head', files.manifest.layout.architecture, precision, files);
    const features = support(files.manifest.backbone.feature_dim);
    await timed(() => generator.generate(features, options), repeats, row, track);
    await generator.release();
    row.peakRssMb = peak;
    rows.push(row);
  }
  for (const precision of await shipped(cnnSource)) {
    const files = await loadCnnGeneratorFiles(cnnSource, precision);
    const { selected, probeSession } = await selectBackend('cpu', nodeHost, files.decoder);
    await probeSession.release();
    const generator = await CnnGenerator.create(files, selected);
    const features = support(files.manifest.backbone.feature_dim);
    for (const arch of generator.archs) {
      const row = newRow('cnn', arch, precision, files);
      await timed(() => generator.generate(arch, features, options), repeats, row, track);
      row.peakRssMb = peak;
      rows.push(row);
    }
    await generator.release();
  }

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
      'Rebuild: `npm run bench`.',
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
  ];
  writeFileSync(join(out, 'REPORT.md'), lines.join('\n'));
  process.stdout.write(lines.join('\n'));
}

await main();
