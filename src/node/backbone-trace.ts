// Records the backbone's features of the factory's fixture images, computed in
// Node (tfjs-wasm). Unit tests replay them in Node, and the e2e suite compares
// the page's features (WebGPU and wasm) with them.
//
// Usage: npm run backbone:trace

import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { extractFeatures, loadBackbone } from '../engine/backbone';
import { directorySource } from '../engine/node-host';
import { PREPROCESS_VERSION } from '../engine/preprocess';
import { decodeImage } from './images';
import { nodeTf } from './tf-node';

export const fixturesDir = resolve(import.meta.dirname, '../../models/fixtures');
export const backboneDir = resolve(import.meta.dirname, '../../models/release/backbone');

export interface BackboneTrace {
  backbone_id: string;
  backbone_weights_sha256: string;
  preprocess_version: number;
  tf_backend: string;
  features: Record<string, number[]>;
}

export async function nodeFixtureFeatures() {
  const { tf, selected } = await nodeTf();
  const backbone = await loadBackbone(directorySource(backboneDir), tf);
  const names = readdirSync(join(fixturesDir, 'images')).sort();
  const images = await Promise.all(
    names.map((name) => decodeImage(readFileSync(join(fixturesDir, 'images', name)), name)),
  );
  const features = await extractFeatures(backbone, images);
  return { backbone, selected, names, features };
}

async function main() {
  const { backbone, selected, names, features } = await nodeFixtureFeatures();
  const trace: BackboneTrace = {
    backbone_id: backbone.manifest.id,
    backbone_weights_sha256: backbone.manifest.weights_file.sha256,
    preprocess_version: PREPROCESS_VERSION,
    tf_backend: selected.backend,
    features: Object.fromEntries(
      names.map((name, i) => [
        name,
        Array.from(features[i] ?? [], (v) => Number(v.toPrecision(7))),
      ]),
    ),
  };
  writeFileSync(join(fixturesDir, 'backbone-trace.json'), `${JSON.stringify(trace)}\n`);
  process.stdout.write(`recorded features of ${names.length} fixture images\n`);
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
