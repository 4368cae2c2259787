// The recipe for using a generated head elsewhere (README, "Using generated
// weights"): run the backbone on an image (same preprocessing), feed its raw
// features to sample-<k>.onnx. Checked here end to end against the engine.
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { extractFeatures, loadBackbone } from '../engine/backbone';
import { maxAbsDifference } from '../engine/compare';
import { predict, unitNormalise } from '../engine/heads';
import { directorySource } from '../engine/node-host';
import { headToOnnx } from '../engine/onnx-writer';
import { Mulberry32 } from '../engine/rng';
import { decodeImage } from './images';
import { nodeTf } from './tf-node';

const release = fileURLToPath(new URL('../../models/release/', import.meta.url));
const fixtures = fileURLToPath(new URL('../../models/fixtures/images/', import.meta.url));

describe('a generated head as ONNX, chained after the backbone', () => {
  it('gives the logits and classes of the engine’s head on backbone features', async () => {
    const { tf } = await nodeTf();
    const backbone = await loadBackbone(directorySource(`${release}/backbone`), tf);
    const names = ['glyph-rgba.png', 'wide.png', 'tall.png'];
    const images = await Promise.all(
      names.map(async (n) => decodeImage(new Uint8Array(await readFile(`${fixtures}/${n}`)), n)),
    );
    const features = await extractFeatures(backbone, images);
    backbone.model.dispose();
    const dim = backbone.manifest.feature_dim;
    const raw = new Float32Array(names.length * dim);
    features.forEach((f, i) => raw.set(f, i * dim));

    const classes = 4;
    const rng = new Mulberry32(1);
    const weight = Float32Array.from({ length: classes * dim }, () => rng.normal());
    const bias = Float32Array.from({ length: classes }, () => rng.normal());
    const session = await ort.InferenceSession.create(headToOnnx(weight, bias, classes, dim));
    const out = await session.run({
      features: new ort.Tensor('float32', raw, [names.length, dim]),
    });
    await session.release();
    const logits = out.logits!.data as Float32Array;

    const unit = unitNormalise(raw, dim);
    const expected = Array.from({ length: names.length * classes }, (_, k) => {
      const [i, c] = [Math.floor(k / classes), k % classes];
      let sum = bias[c]!;
      for (let j = 0; j < dim; j++) sum += weight[c * dim + j]! * unit[i * dim + j]!;
      return sum;
    });
    expect(maxAbsDifference(Array.from(logits), expected)).toBeLessThanOrEqual(1e-4);
    const argmax = Array.from({ length: names.length }, (_, i) => {
      const row = Array.from(logits.subarray(i * classes, (i + 1) * classes));
      return row.indexOf(Math.max(...row));
    });
    expect(argmax).toEqual(Array.from(predict({ classes, dim, weight, bias }, unit)));
  }, 60_000);
});
