import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cosineSimilarity, maxRelativeDifference } from '../engine/compare';
import { PREPROCESS_VERSION } from '../engine/preprocess';
import {
  backboneDir,
  fixturesDir,
  nodeFixtureFeatures,
  type BackboneTrace,
} from './backbone-trace';

const trace = JSON.parse(
  readFileSync(join(fixturesDir, 'backbone-trace.json'), 'utf8'),
) as BackboneTrace;
const manifest = JSON.parse(readFileSync(join(backboneDir, 'backbone.json'), 'utf8')) as {
  feature_dim: number;
  weights_file: { sha256: string };
};

describe('backbone features in Node (tfjs-wasm)', () => {
  it('reproduce the recorded features of every fixture image', async () => {
    expect(trace.backbone_weights_sha256).toBe(manifest.weights_file.sha256);
    expect(trace.preprocess_version).toBe(PREPROCESS_VERSION);
    const { names, features, selected } = await nodeFixtureFeatures();
    expect(selected.backend).toBe('wasm');
    expect(names).toEqual(Object.keys(trace.features).sort());
    // Recorded at 7 significant digits; a change of preprocessing or kernels shows as far more.
    names.forEach((name, i) => {
      const actual = features[i] ?? [];
      expect(actual).toHaveLength(manifest.feature_dim);
      expect(maxRelativeDifference(actual, trace.features[name] ?? []), name).toBeLessThan(1e-4);
    });
  });

  it('give different images different features', async () => {
    const { features } = await nodeFixtureFeatures();
    expect(features.length).toBeGreaterThan(1);
    for (let i = 1; i < features.length; i++) {
      expect(cosineSimilarity(features[0] ?? [], features[i] ?? [])).toBeLessThan(0.95);
    }
  });
});
