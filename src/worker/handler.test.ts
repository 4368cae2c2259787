import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { maxRelativeDifference } from '../engine/compare';
import { directorySource, nodeHost } from '../engine/node-host';
import { fixturesDir, type BackboneTrace } from '../node/backbone-trace';
import { decodeImage } from '../node/images';
import { nodeTf } from '../node/tf-node';
import { createHandler } from './handler';
import type { ImageFile, WorkerEvent, WorkerRequest } from './protocol';

const releaseDir = fileURLToPath(new URL('../../models/release/', import.meta.url));

function nodeHandler() {
  const events: WorkerEvent[] = [];
  const decoded: string[] = [];
  const handle = createHandler({
    host: nodeHost,
    features: {
      decode: (bytes, name) => (decoded.push(name), decodeImage(new Uint8Array(bytes), name)),
      tf: () => nodeTf(),
    },
    post: (event) => events.push(event),
    source: (url) => directorySource(releaseDir + url),
  });
  return { events, handle, decoded };
}

function fixtureImages(): ImageFile[] {
  return readdirSync(join(fixturesDir, 'images'))
    .sort()
    .map((name) => {
      const bytes = readFileSync(join(fixturesDir, 'images', name));
      return { name, bytes: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length) };
    });
}

const stages = (events: WorkerEvent[]) =>
  events.map((e) => (e.type === 'progress' ? e.stage : e.type));

describe('worker request handling', () => {
  it('answers run-slice with its stages in order, then one result', async () => {
    const { events, handle } = nodeHandler();
    await handle({ type: 'run-slice', requestId: 7, backend: 'cpu', releaseUrl: 'slice' });
    expect(stages(events)).toEqual(['load-release', 'select-backend', 'slice-result']);
    expect(events.every((e) => e.requestId === 7)).toBe(true);
    const last = events.at(-1);
    expect(last?.type === 'slice-result' && last.result.passed).toBe(true);
  });

  it('turns a missing release folder into an error event, not a crash', async () => {
    const { events, handle } = nodeHandler();
    await handle({
      type: 'run-slice',
      requestId: 1,
      backend: 'cpu',
      releaseUrl: 'no-such-release',
    });
    const last = events.at(-1);
    expect(last?.type).toBe('error');
    expect(last?.type === 'error' && last.message).toMatch(/no-such-release.*manifest\.json/);
  });

  it('answers overlapping requests one after the other, each completely', async () => {
    const { events, handle } = nodeHandler();
    const request = (requestId: number): WorkerRequest => ({
      type: 'run-slice',
      requestId,
      backend: 'cpu',
      releaseUrl: 'slice',
    });
    await Promise.all([handle(request(1)), handle(request(2))]);
    expect(events.map((e) => e.requestId)).toEqual([1, 1, 1, 2, 2, 2]);
    expect(events.filter((e) => e.type === 'slice-result')).toHaveLength(2);
  });

  it('extracts the recorded backbone features of the fixture images', async () => {
    const trace = JSON.parse(
      readFileSync(join(fixturesDir, 'backbone-trace.json'), 'utf8'),
    ) as BackboneTrace;
    const { events, handle } = nodeHandler();
    const images = fixtureImages();
    await handle({
      type: 'extract-features',
      requestId: 3,
      backend: 'auto',
      backboneUrl: 'backbone',
      images,
    });
    const last = events.at(-1);
    if (last?.type !== 'features-result')
      throw new Error(`expected a result, got ${JSON.stringify(last)}`);
    expect(last.result.backend).toBe('wasm');
    expect(last.result.images.map((i) => i.name)).toEqual(images.map((i) => i.name));
    for (const image of last.result.images) {
      expect(maxRelativeDifference(image.features, trace.features[image.name] ?? [])).toBeLessThan(
        1e-4,
      );
    }
    const extracting = events.filter((e) => e.type === 'progress' && e.stage === 'features');
    expect(extracting.at(-1)).toMatchObject({ done: images.length, total: images.length });
  });

  it('names the file that is not an image, and keeps working afterwards', async () => {
    const { events, handle } = nodeHandler();
    const notAnImage = new TextEncoder().encode('just text').buffer;
    await handle({
      type: 'extract-features',
      requestId: 4,
      backend: 'auto',
      backboneUrl: 'backbone',
      images: [...fixtureImages().slice(0, 1), { name: 'notes.txt', bytes: notAnImage }],
    });
    expect(events.at(-1)).toMatchObject({ type: 'error', requestId: 4 });
    expect(events.at(-1)?.type === 'error' && events.at(-1)).toMatchObject({
      message: expect.stringMatching(/^notes\.txt: not a readable image/),
    });
    await handle({ type: 'run-slice', requestId: 5, backend: 'cpu', releaseUrl: 'slice' });
    expect(events.at(-1)?.type).toBe('slice-result');
  });

  it('refuses an empty image list with a message', async () => {
    const { events, handle } = nodeHandler();
    await handle({
      type: 'extract-features',
      requestId: 6,
      backend: 'auto',
      backboneUrl: 'backbone',
      images: [],
    });
    expect(events.at(-1)).toEqual({ type: 'error', requestId: 6, message: 'no images were given' });
  });

  it('generates heads for classes of images, says what it skipped, and stops on cancel', async () => {
    const { events, handle } = nodeHandler();
    const images = fixtureImages();
    const notImage = {
      name: 'notes.txt',
      bytes: new TextEncoder().encode('text').buffer as ArrayBuffer,
    };
    const request = (requestId: number, steps: number): WorkerRequest => ({
      type: 'generate',
      requestId,
      backend: 'cpu',
      featureBackend: 'wasm',
      family: 'head',
      releaseUrl: '',
      classes: [
        { name: 'a', images: [images[0]!, images[1]!, notImage] },
        { name: 'b', images: [images[2]!, images[3]!] },
      ],
      options: { samples: 2, steps, seed: 1 },
      precision: 'int8',
    });
    await handle(request(3, 4));
    const result = events.at(-1);
    if (result?.type !== 'generate-result') throw new Error(JSON.stringify(result));
    expect(result.result.classes).toEqual(['a', 'b']);
    expect(result.result.imagesPerClass).toEqual([2, 2]);
    expect(result.result.unreadable).toHaveLength(1);
    expect(result.result.unreadable[0]).toMatch(/^notes\.txt: not a readable image/);
    // int8 was asked for; the head release ships fp32 graphs only, and the result says so.
    expect(result.result.precision).toBe('fp32');
    expect(result.result.networks).toHaveLength(2);
    expect(result.result.networks[0]!.weight!.shape).toEqual([2, 1792]);
    expect(result.result.onnx[1]!.length).toBeGreaterThan(2 * 1792 * 4);
    expect(stages(events)).toContain('denoise');

    events.length = 0;
    const running = handle(request(4, 500));
    while (!events.some((e) => e.type === 'progress' && e.stage === 'denoise'))
      await new Promise((r) => setTimeout(r, 5));
    await handle({ type: 'cancel', requestId: 5, target: 4 });
    await running;
    expect(events.at(-1)).toEqual({
      type: 'error',
      requestId: 4,
      message: 'generation was cancelled',
    });
  }, 60_000);

  it('refuses one class with a message', async () => {
    const { events, handle } = nodeHandler();
    await handle({
      type: 'generate',
      requestId: 9,
      backend: 'cpu',
      featureBackend: 'wasm',
      family: 'head',
      releaseUrl: '',
      classes: [{ name: 'only', images: fixtureImages() }],
      options: {},
      precision: 'fp32',
    });
    expect(events.at(-1)).toEqual({
      type: 'error',
      requestId: 9,
      message: 'a classifier needs at least 2 classes (one folder of images per class); got 1',
    });
  });

  it('keeps the features of images it has seen: a second run on the same folder decodes nothing', async () => {
    const { events, handle, decoded } = nodeHandler();
    const images = fixtureImages();
    const request = (requestId: number, family: 'head' | 'cnn'): WorkerRequest => ({
      type: 'generate',
      requestId,
      backend: 'cpu',
      featureBackend: 'wasm',
      family,
      releaseUrl: '',
      classes: [
        { name: 'a', images: images.slice(0, 2) },
        { name: 'b', images: images.slice(2, 4) },
      ],
      options: { samples: 1, steps: 2 },
      precision: 'int8',
    });
    await handle(request(1, 'head'));
    expect(decoded).toHaveLength(4);
    await handle(request(2, 'cnn'));
    expect(decoded).toHaveLength(4);
    const results = events.filter((e) => e.type === 'generate-result');
    expect(results.map((e) => e.type === 'generate-result' && e.result.imagesPerClass)).toEqual([
      [2, 2],
      [2, 2],
    ]);
  }, 60_000);

  it('fine-tunes the starts of the last evaluated run, reporting each curve as it grows', async () => {
    const { events, handle } = nodeHandler();
    const images = fixtureImages();
    await handle({
      type: 'generate',
      requestId: 1,
      backend: 'cpu',
      featureBackend: 'wasm',
      family: 'head',
      releaseUrl: '',
      classes: [
        { name: 'a', images: images.slice(0, 2) },
        { name: 'b', images: images.slice(2, 4) },
      ],
      query: [
        { name: 'a', images: images.slice(0, 2) },
        { name: 'b', images: images.slice(2, 4) },
      ],
      options: { samples: 2, steps: 2 },
      precision: 'int8',
    });
    expect(events.at(-1)?.type).toBe('generate-result');
    events.length = 0;
    await handle({ type: 'fine-tune', requestId: 2, backend: 'cpu', epochs: 3 });
    const result = events.at(-1);
    if (result?.type !== 'fine-tune-result') throw new Error(JSON.stringify(result));
    const { curves } = result.result;
    expect(curves.map((c) => [c.name, c.heads, c.accuracy.length])).toEqual([
      ['generated', 2, 4],
      ['generated + refined', 2, 4],
      ['random init', 1, 4],
    ]);
    // The support is the query here: fine-tuned from any start, the heads fit it.
    for (const c of curves) expect(c.accuracy.at(-1)).toBe(1);
    const points = events.flatMap((e) =>
      e.type === 'progress' && e.measured !== undefined
        ? [`${e.measured.series}@${e.measured.epoch}`]
        : [],
    );
    expect(points.slice(0, 4)).toEqual([
      'generated@0',
      'generated + refined@0',
      'random init@0',
      'generated@1',
    ]);
    expect(points).toHaveLength(3 * 4);

    // After a run without held-out images there is nothing to fine-tune toward.
    await handle({
      type: 'generate',
      requestId: 3,
      backend: 'cpu',
      featureBackend: 'wasm',
      family: 'head',
      releaseUrl: '',
      classes: [
        { name: 'a', images: images.slice(0, 2) },
        { name: 'b', images: images.slice(2, 4) },
      ],
      options: { samples: 1, steps: 2 },
      precision: 'int8',
    });
    await handle({ type: 'fine-tune', requestId: 4, backend: 'cpu' });
    expect(events.at(-1)).toEqual({
      type: 'error',
      requestId: 4,
      message:
        'fine-tuning needs a generation of heads with held-out images just before it; generate again',
    });
  }, 60_000);
});
