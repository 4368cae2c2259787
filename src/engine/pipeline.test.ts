import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { fixturesDir } from '../node/backbone-trace';
import { decodeImage } from '../node/images';
import { nodeTf } from '../node/tf-node';
import { loadBackbone, type Backbone } from './backbone';
import { GeneratorRegistry, type Family } from './generators';
import { directorySource, nodeHost } from './node-host';
import { generateWeights, type ClassFeatures, type FeatureExtractor } from './pipeline';
import { GenerationCancelled, STAGES, type Progress } from './progress';
import { Mulberry32 } from './rng';

const releaseDir = fileURLToPath(new URL('../../models/release/', import.meta.url));
const generators = new GeneratorRegistry(nodeHost, (family) =>
  directorySource(join(releaseDir, family)),
);
afterAll(() => generators.releaseAll());

function features(classes: number, images: number, seed = 1): ClassFeatures[] {
  const rng = new Mulberry32(seed);
  return Array.from({ length: classes }, (_, c) => ({
    name: `c${c}`,
    features: Float32Array.from({ length: images * 1792 }, () => rng.normal()),
  }));
}

/** Progress must never go backwards: stages in the documented order, units rising within one. */
function expectMonotone(events: Progress[]): void {
  let last: Progress | undefined;
  for (const p of events) {
    expect(p.done).toBeLessThanOrEqual(p.total);
    if (last !== undefined) {
      const order = STAGES.indexOf(p.stage) - STAGES.indexOf(last.stage);
      expect(order, `${last.stage} → ${p.stage}`).toBeGreaterThanOrEqual(0);
      if (order === 0) expect(p.done, p.stage).toBeGreaterThanOrEqual(last.done);
    }
    last = p;
  }
}

let backbone: Promise<Backbone> | undefined;
const extractor: FeatureExtractor = {
  decode: (bytes, name) =>
    decodeImage(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes), name),
  backbone: async () => {
    const { tf } = await nodeTf();
    backbone ??= loadBackbone(directorySource(join(releaseDir, 'backbone')), tf);
    return { backbone: await backbone, backendLabel: 'wasm' };
  },
};

describe('generateWeights, the one pipeline', () => {
  for (const family of ['head', 'cnn'] as Family[])
    it(`gives ${family} samples as named tensors and ONNX, with progress that never goes back`, async () => {
      const events: Progress[] = [];
      const result = await generateWeights(
        {
          family,
          backend: 'cpu',
          options: { samples: 2, steps: 3, seed: 5 },
          data: { features: features(3, 2) },
        },
        { generators },
        { onProgress: (p) => events.push(p) },
      );
      expect(result.networks).toHaveLength(2);
      expect(result.onnx).toHaveLength(2);
      expect(result.options).toMatchObject({ samples: 2, steps: 3, seed: 5 });
      const manifest = JSON.parse(
        readFileSync(join(releaseDir, family, 'manifest.json'), 'utf8'),
      ) as { default_arch?: string; layout: { architecture?: string } };
      expect(result.arch).toBe(manifest.default_arch ?? manifest.layout.architecture);
      // Every network has one output row per class.
      const last = Object.values(result.networks[1]!).at(-1)!;
      expect(last.shape[0]).toBe(3);
      expectMonotone(events);
      expect(events.filter((p) => p.stage === 'denoise').map((p) => p.done)).toEqual([1, 2, 3]);
      expect(events.at(-1)).toEqual({ stage: 'export', done: 2, total: 2, backend: 'cpu' });
      // Once the generator is open, every event names the backend doing the work.
      const opened = events.findIndex((p) => p.stage === 'encode');
      expect(events.slice(opened).every((p) => p.backend === 'cpu')).toBe(true);
    });

  it('opens each generator once and reuses it', async () => {
    const a = generators.open('head', { backend: 'cpu' });
    const b = generators.open('head', { backend: 'cpu' });
    expect(await a).toBe(await b);
    const first = await generateWeights(
      {
        family: 'head',
        backend: 'cpu',
        options: { samples: 1, steps: 2 },
        data: { features: features(2, 1) },
      },
      { generators },
    );
    const second = await generateWeights(
      {
        family: 'head',
        backend: 'cpu',
        options: { samples: 1, steps: 2 },
        data: { features: features(2, 1) },
      },
      { generators },
    );
    expect(first.networks[0]!.weight!.data).toEqual(second.networks[0]!.weight!.data);
  });

  it('refuses too many classes, an unknown architecture or one class before reading any image', async () => {
    let decoded = 0;
    const counting: FeatureExtractor = {
      ...extractor,
      decode: (bytes, name) => (decoded++, extractor.decode(bytes, name)),
    };
    const images = (classes: number) =>
      Array.from({ length: classes }, (_, c) => ({
        name: `c${c}`,
        images: [{ name: 'x.png', read: async () => new Uint8Array(1) }],
      }));
    const run = (family: Family, classes: number, arch?: string) =>
      generateWeights(
        { family, ...(arch ? { arch } : {}), backend: 'cpu', data: { images: images(classes) } },
        { generators, extractor: counting },
      );
    await expect(run('head', 21)).rejects.toThrow(
      '21 classes; this release generates heads of up to 20',
    );
    await expect(run('cnn', 2, 'cnn-x')).rejects.toThrow('unknown CNN architecture "cnn-x"');
    await expect(run('head', 1)).rejects.toThrow(/at least 2 classes/);
    expect(decoded).toBe(0);
  });

  it('reads images one at a time, names the unreadable ones, and stops when cancelled', async () => {
    const names = readdirSync(join(fixturesDir, 'images')).sort();
    const file = (name: string) => ({
      name,
      read: async () => new Uint8Array(readFileSync(join(fixturesDir, 'images', name))),
    });
    const broken = { name: 'broken.png', read: async () => new Uint8Array([137, 80, 78, 71]) };
    const data = {
      images: [
        { name: 'a', images: [file(names[0]!), broken] },
        { name: 'b', images: [file(names[1]!)] },
      ],
    };
    const result = await generateWeights(
      { family: 'head', backend: 'cpu', options: { samples: 1, steps: 2 }, data },
      { generators, extractor },
    );
    expect(result.imagesPerClass).toEqual([1, 1]);
    expect(result.unreadable).toEqual([
      expect.stringMatching(/^broken\.png: not a readable image/),
    ]);
    expect(result.featureBackend).toBe('wasm');

    const controller = new AbortController();
    const cancelled = generateWeights(
      { family: 'head', backend: 'cpu', options: { samples: 1, steps: 50 }, data },
      { generators, extractor },
      {
        signal: controller.signal,
        onProgress: (p) => p.stage === 'denoise' && p.done === 3 && controller.abort(),
      },
    );
    await expect(cancelled).rejects.toBeInstanceOf(GenerationCancelled);
  }, 60_000);
});
