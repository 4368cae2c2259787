import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { backboneDir, fixturesDir } from '../node/backbone-trace';
import { decodeImage } from '../node/images';
import { nodeTf } from '../node/tf-node';
import { extractFeatures, loadBackbone, type BackboneManifest } from './backbone';
import { backboneClassifierOnnx, samePadding } from './backbone-onnx';
import { maxAbsDifference } from './compare';
import { unitNormalise, type Head } from './heads';
import { preprocessImage } from './preprocess';
import { Mulberry32 } from './rng';

// Measured (tfjs-wasm vs onnxruntime-node CPU, these 3 images): unit features differ by at
// most 7.6e-7 (|unit| ≤ 0.22; 2.5e-6 to 3.7e-6 relative in L2 norm per image); logits of a
// head with weights 5·N(0, 1) by at most 2.1e-5 (|logits| up to 10.8). Tolerances are
// about 10× those.
const UNIT_FEATURE_TOLERANCE = 1e-5;
const LOGIT_TOLERANCE = 2e-4;

const modelJson = readFileSync(join(backboneDir, 'model.json'));
const weightsBin = readFileSync(join(backboneDir, 'weights.bin'));
const names = ['glyph-rgba.png', 'wide.png', 'tall.png'];

/** The top-level metadata_props (field 14) of an ONNX ModelProto, read back from its bytes. */
function metadataProps(bytes: Uint8Array): Record<string, string> {
  const varint = (at: { i: number }): number => {
    let value = 0;
    let shift = 1;
    for (;;) {
      const b = bytes[at.i++]!;
      value += (b & 0x7f) * shift;
      shift *= 128;
      if (b < 0x80) return value;
    }
  };
  const fields = (start: number, end: number): [number, Uint8Array][] => {
    const out: [number, Uint8Array][] = [];
    const at = { i: start };
    while (at.i < end) {
      const key = varint(at);
      if ((key & 7) === 0) {
        varint(at);
        continue;
      }
      const length = varint(at);
      out.push([key >> 3, bytes.subarray(at.i, at.i + length)]);
      at.i += length;
    }
    return out;
  };
  const text = new TextDecoder();
  const props: Record<string, string> = {};
  for (const [field, entry] of fields(0, bytes.length)) {
    if (field !== 14) continue;
    const offset = entry.byteOffset - bytes.byteOffset;
    const kv = Object.fromEntries(fields(offset, offset + entry.length));
    props[text.decode(kv[1])] = text.decode(kv[2]);
  }
  return props;
}

describe('samePadding (TF SAME)', () => {
  it('puts the odd pixel after, as TF and ONNX SAME_UPPER do', () => {
    expect(samePadding(224, 3, 2)).toEqual({ before: 0, after: 1, out: 112 });
    expect(samePadding(7, 3, 2)).toEqual({ before: 1, after: 1, out: 4 });
    expect(samePadding(112, 3, 1)).toEqual({ before: 1, after: 1, out: 112 });
    expect(samePadding(8, 5, 2, 2)).toEqual({ before: 3, after: 4, out: 4 });
    expect(samePadding(7, 1, 2)).toEqual({ before: 0, after: 0, out: 4 });
  });
});

describe('the whole classifier as ONNX (backbone converted from tfjs + head)', () => {
  let manifest: BackboneManifest;
  let batch: Float32Array; // [3, 224, 224, 3]
  let unit: Float32Array; // the engine's unit-normalised features, [3, dim]

  beforeAll(async () => {
    const { tf } = await nodeTf();
    const backbone = await loadBackbone(
      async (name) => new Uint8Array(readFileSync(join(backboneDir, name))),
      tf,
    );
    manifest = backbone.manifest;
    const images = await Promise.all(
      names.map((n) =>
        decodeImage(new Uint8Array(readFileSync(join(fixturesDir, 'images', n))), n),
      ),
    );
    const features = await extractFeatures(backbone, images);
    backbone.model.dispose();
    const dim = manifest.feature_dim;
    const raw = new Float32Array(names.length * dim);
    features.forEach((f, i) => raw.set(f, i * dim));
    unit = unitNormalise(raw, dim);
    const size = manifest.input_size;
    batch = new Float32Array(names.length * size * size * 3);
    images.forEach((image, i) => batch.set(preprocessImage(image, size), i * size * size * 3));
  }, 60_000);

  async function run(head: Head, classes: string[]) {
    const bytes = backboneClassifierOnnx(modelJson, weightsBin, manifest, head, classes, 'test');
    const session = await ort.InferenceSession.create(bytes);
    const size = manifest.input_size;
    try {
      expect(session.inputNames).toEqual(['images']);
      expect(session.outputNames).toEqual(['probabilities', 'logits']);
      const out = await session.run({
        images: new ort.Tensor('float32', batch, [names.length, size, size, 3]),
      });
      expect(out.logits!.dims).toEqual([names.length, head.classes]);
      return {
        bytes,
        logits: out.logits!.data as Float32Array,
        probabilities: out.probabilities!.data as Float32Array,
      };
    } finally {
      await session.release();
    }
  }

  it('computes the engine’s unit-normalised features (identity head)', async () => {
    const dim = manifest.feature_dim;
    const eye = new Float32Array(dim * dim);
    for (let i = 0; i < dim; i++) eye[i * dim + i] = 1;
    const head = { classes: dim, dim, weight: eye, bias: new Float32Array(dim) };
    const { logits } = await run(
      head,
      Array.from({ length: dim }, (_, i) => `feature ${i}`),
    );
    expect(maxAbsDifference(logits, unit)).toBeLessThanOrEqual(UNIT_FEATURE_TOLERANCE);
  }, 60_000);

  it('gives the head’s logits and softmax on those features, and names the classes', async () => {
    const dim = manifest.feature_dim;
    const classes = ['cats', 'dogs', 'ducks'];
    const rng = new Mulberry32(3);
    const head = {
      classes: 3,
      dim,
      weight: Float32Array.from({ length: 3 * dim }, () => 5 * rng.normal()),
      bias: Float32Array.from([0.3, -0.2, 0.1]),
    };
    const { bytes, logits, probabilities } = await run(head, classes);
    const expected = Array.from({ length: names.length * 3 }, (_, k) => {
      const [i, c] = [Math.floor(k / 3), k % 3];
      let sum = head.bias[c]!;
      for (let j = 0; j < dim; j++) sum += head.weight[c * dim + j]! * unit[i * dim + j]!;
      return sum;
    });
    expect(maxAbsDifference(logits, expected)).toBeLessThanOrEqual(LOGIT_TOLERANCE);
    for (let i = 0; i < names.length; i++) {
      const row = expected.slice(i * 3, i * 3 + 3);
      const top = Math.max(...row);
      const exp = row.map((l) => Math.exp(l - top));
      const total = exp.reduce((a, b) => a + b, 0);
      const p = probabilities.subarray(i * 3, i * 3 + 3);
      expect(Math.abs(p.reduce((a, b) => a + b, 0) - 1)).toBeLessThanOrEqual(1e-6);
      expect(
        maxAbsDifference(
          p,
          exp.map((e) => e / total),
        ),
      ).toBeLessThanOrEqual(1e-5);
    }
    const props = metadataProps(bytes);
    expect(JSON.parse(props.classes!)).toEqual(classes);
    expect(props.backbone).toBe(manifest.id);
    // The backbone's float32 weights (~17 MB) and the head: a little over 17 MB in all.
    expect(bytes.length).toBeGreaterThan(16e6);
    expect(bytes.length).toBeLessThan(19e6);
  }, 60_000);

  it('names an operator it cannot convert, and a head that does not fit', () => {
    const head = { classes: 1, dim: 5, weight: new Float32Array(5), bias: new Float32Array(1) };
    expect(() => backboneClassifierOnnx(modelJson, weightsBin, manifest, head, ['a'], '')).toThrow(
      /takes 5 features/,
    );
    const json = JSON.parse(new TextDecoder().decode(modelJson)) as {
      modelTopology: { node: { op: string }[] };
    };
    for (const n of json.modelTopology.node) if (n.op === 'AvgPool') n.op = 'Mean';
    const fitting = {
      ...head,
      dim: manifest.feature_dim,
      weight: new Float32Array(manifest.feature_dim),
    };
    expect(() =>
      backboneClassifierOnnx(
        new TextEncoder().encode(JSON.stringify(json)),
        weightsBin,
        manifest,
        fitting,
        ['a'],
        '',
      ),
    ).toThrow(/Mean node .*AvgPool is not converted/);
  });
});
