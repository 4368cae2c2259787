// Converts the MobileNetV2-1.4 graph model that the npm package nsfwjs ships
// (model JSON and base64 weight shards packed as JS modules) into standard
// tfjs artifacts (model.json + weights.bin) plus the backbone manifest, in the
// release folder. Deterministic: same package version, same bytes.
//
// Usage: npm run backbone:convert [-- --out models/release/backbone]

import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { BackboneManifest } from '../engine/backbone';

const require = createRequire(import.meta.url);
// nsfwjs exports no package.json; its CommonJS entry is dist/cjs/index.js.
const nsfwjsDir = resolve(dirname(require.resolve('nsfwjs')), '../..');
const modelDir = join(nsfwjsDir, 'dist/models/mobilenet_v2_mid');

const FEATURE_NODE =
  'StatefulPartitionedCall/sequential/keras_layer/StatefulPartitionedCall/StatefulPartitionedCall/' +
  'StatefulPartitionedCall/predict/feature_vector/SpatialSqueeze';

interface WeightsGroup {
  paths: string[];
  weights: unknown[];
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export function convertBackbone(outDir: string): BackboneManifest {
  const packageJson = JSON.parse(readFileSync(join(nsfwjsDir, 'package.json'), 'utf8')) as {
    version: string;
    license: string;
  };
  const modelPath = join(modelDir, 'model.min.js');
  const modelJson = require(modelPath) as { weightsManifest: WeightsGroup[] } & Record<
    string,
    unknown
  >;
  const sourceFiles = [modelPath];
  const shards: Buffer[] = [];
  for (const group of modelJson.weightsManifest) {
    for (const shard of group.paths) {
      const shardPath = join(modelDir, `${shard}.min.js`);
      sourceFiles.push(shardPath);
      shards.push(Buffer.from(require(shardPath) as string, 'base64'));
    }
  }
  const weights = Buffer.concat(shards);
  const converted = {
    ...modelJson,
    weightsManifest: [
      { paths: ['weights.bin'], weights: modelJson.weightsManifest.flatMap((g) => g.weights) },
    ],
  };
  const modelBytes = Buffer.from(JSON.stringify(converted));
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'model.json'), modelBytes);
  writeFileSync(join(outDir, 'weights.bin'), weights);

  const manifest: BackboneManifest = {
    id: 'nsfwjs-mobilenet-v2-mid',
    format: 'tfjs-graph-model',
    model_file: { file: 'model.json', bytes: modelBytes.byteLength, sha256: sha256(modelBytes) },
    weights_file: { file: 'weights.bin', bytes: weights.byteLength, sha256: sha256(weights) },
    input_node: 'input',
    input_size: 224,
    feature_node: FEATURE_NODE,
    feature_dim: 1792,
    preprocessing: {
      alpha: 'composite-on-white',
      resize: 'letterbox',
      resample: 'triangle-antialias',
      pad_value: 1,
      value_range: [0, 1],
    },
    source: {
      npm_package: 'nsfwjs',
      version: packageJson.version,
      license: packageJson.license,
      files: sourceFiles.map((path) => ({
        path: path.slice(nsfwjsDir.length + 1),
        sha256: sha256(readFileSync(path)),
      })),
    },
    rebuild_command: 'npm run backbone:convert',
  };
  writeFileSync(join(outDir, 'backbone.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { out: { type: 'string' } } });
  const outDir = resolve(values.out ?? join(import.meta.dirname, '../../models/release/backbone'));
  const manifest = convertBackbone(outDir);
  process.stdout.write(
    `wrote ${manifest.model_file.file} and ${manifest.weights_file.file} (${manifest.weights_file.bytes} bytes) to ${outDir}\n`,
  );
}
