// The factory's feature cache: backbone features of every dataset the Python
// `datasets` stage rendered, computed by the same TypeScript code the page
// runs, and written where Python reads them. Resumable: a dataset whose cached
// features were made from the same images, backbone and preprocessing is skipped.
//
// Usage: npm run features -- [--data .cache/data] [--out .cache/features/data] [--only PREFIX]
//                            [--partition seen|unseen] [--shard K/N] [--batch 16]
//
// Writes, per dataset, <out>/<backbone id>/<dataset id>/features.npy ([N, D]
// float32, rows in index.json image order) and meta.json. The default --out is
// <cache>/features/<name of the --data folder>.

import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { extractFeatures, loadBackbone, type Backbone } from '../engine/backbone';
import { directorySource } from '../engine/node-host';
import { PREPROCESS_VERSION } from '../engine/preprocess';
import { array, integer, literal, object, parse, string } from '../engine/schema';
import { decodeImage } from './images';
import { encodeNpyFloat32 } from './npy';
import { nodeTf } from './tf-node';

const repoRoot = resolve(import.meta.dirname, '../..');

export const datasetIndexSchema = object({
  dataset_id: string,
  family: string,
  partition: literal('seen', 'unseen'),
  classes: array(object({ name: string, slug: string })),
  images: array(
    object({ file: string, class_index: integer, split: literal('train', 'test'), sha256: string }),
  ),
  content_hash: string,
});
export type DatasetIndex = ReturnType<typeof datasetIndexSchema>;

/** Every index.json under `dataRoot`, as dataset ids (their folder relative to the root), sorted. */
export function findDatasets(dataRoot: string): string[] {
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      if (name === 'index.json') found.push(relative(dataRoot, dir));
      else if (statSync(path).isDirectory()) walk(path);
    }
  };
  if (existsSync(dataRoot)) walk(dataRoot);
  return found;
}

function cacheKey(index: DatasetIndex, backbone: Backbone) {
  return {
    dataset_content_hash: index.content_hash,
    backbone_id: backbone.manifest.id,
    backbone_weights_sha256: backbone.manifest.weights_file.sha256,
    preprocess_version: PREPROCESS_VERSION,
  };
}

export async function cacheDatasetFeatures(
  dataRoot: string,
  outRoot: string,
  datasetId: string,
  backbone: Backbone,
  batchSize: number,
): Promise<'cached' | 'computed'> {
  const datasetDir = join(dataRoot, datasetId);
  const index = parse(
    datasetIndexSchema,
    JSON.parse(readFileSync(join(datasetDir, 'index.json'), 'utf8')),
    `${datasetId}/index.json`,
  );
  const outDir = join(outRoot, backbone.manifest.id, datasetId);
  const key = cacheKey(index, backbone);
  const metaPath = join(outDir, 'meta.json');
  if (existsSync(metaPath)) {
    const meta = JSON.parse(readFileSync(metaPath, 'utf8')) as { key: unknown };
    if (JSON.stringify(meta.key) === JSON.stringify(key)) return 'cached';
  }
  const started = performance.now();
  const images = await Promise.all(
    index.images.map(async (image) =>
      decodeImage(new Uint8Array(await readFile(join(datasetDir, image.file))), image.file),
    ),
  );
  const features = await extractFeatures(backbone, images, { batchSize });
  const dim = backbone.manifest.feature_dim;
  const matrix = new Float32Array(features.length * dim);
  features.forEach((f, i) => matrix.set(f, i * dim));
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'features.npy.tmp'), encodeNpyFloat32(matrix, [features.length, dim]));
  renameSync(join(outDir, 'features.npy.tmp'), join(outDir, 'features.npy'));
  const meta = {
    key,
    dataset_id: index.dataset_id,
    count: features.length,
    feature_dim: dim,
    files: index.images.map((image) => image.file),
    wall_ms: Math.round(performance.now() - started),
  };
  writeFileSync(`${metaPath}.tmp`, `${JSON.stringify(meta)}\n`);
  renameSync(`${metaPath}.tmp`, metaPath);
  return 'computed';
}

function datasetPartition(dataRoot: string, datasetId: string): string {
  return (
    JSON.parse(readFileSync(join(dataRoot, datasetId, 'index.json'), 'utf8')) as {
      partition: string;
    }
  ).partition;
}

async function main() {
  const { values } = parseArgs({
    options: {
      data: {
        type: 'string',
        default: join(process.env.D2NWG_CACHE ?? join(repoRoot, '.cache'), 'data'),
      },
      out: { type: 'string' },
      backbone: { type: 'string', default: join(repoRoot, 'models/release/backbone') },
      only: { type: 'string', default: '' },
      partition: { type: 'string', default: '' },
      shard: { type: 'string', default: '1/1' },
      batch: { type: 'string', default: '16' },
    },
  });
  const dataRoot = resolve(values.data);
  const outRoot = resolve(values.out ?? join(dirname(dataRoot), 'features', basename(dataRoot)));
  // --shard K/N takes every N-th dataset from the K-th: N processes share the work.
  const [shard, shards] = values.shard.split('/').map(Number) as [number, number];
  if (!(shards >= 1 && shard >= 1 && shard <= shards)) {
    process.stderr.write(`--shard must be K/N with 1 ≤ K ≤ N, got ${values.shard}\n`);
    process.exit(2);
  }
  const datasets = findDatasets(dataRoot)
    .filter((id) => id.startsWith(values.only))
    .filter((id) => values.partition === '' || datasetPartition(dataRoot, id) === values.partition)
    .filter((_, i) => i % shards === shard - 1);
  if (datasets.length === 0) {
    process.stderr.write(`no datasets under ${dataRoot}; run the factory's datasets stage first\n`);
    process.exit(1);
  }
  const { tf, selected } = await nodeTf();
  const backbone = await loadBackbone(directorySource(resolve(values.backbone)), tf);
  process.stderr.write(
    `features: ${datasets.length} datasets, backbone ${backbone.manifest.id} on tfjs-${selected.backend}\n`,
  );
  const started = performance.now();
  let computed = 0;
  for (const [i, id] of datasets.entries()) {
    const t = performance.now();
    const outcome = await cacheDatasetFeatures(
      dataRoot,
      outRoot,
      id,
      backbone,
      Number(values.batch),
    );
    if (outcome === 'computed') computed++;
    process.stderr.write(
      `[${i + 1}/${datasets.length}] ${id}: ${outcome} in ${((performance.now() - t) / 1000).toFixed(1)} s\n`,
    );
  }
  process.stderr.write(
    `features: ${computed} computed, ${datasets.length - computed} cached, ${((performance.now() - started) / 1000).toFixed(0)} s\n`,
  );
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
