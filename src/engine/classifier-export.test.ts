import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { unzipSync } from 'fflate';
import { describe, expect, it } from 'vitest';
import { fixturesDir } from '../node/backbone-trace';
import { decodeImage } from '../node/images';
import { nodeTf } from '../node/tf-node';
import { extractFeatures, loadBackbone } from './backbone';
import { classifierZip } from './classifier-export';
import { directorySource } from './node-host';
import { preprocessImage } from './preprocess';
import { Mulberry32 } from './rng';
import { unitNormalise } from './heads';

const backboneDir = new URL('../../models/release/backbone/', import.meta.url).pathname;

describe('the whole classifier as a tfjs graph model (backbone + generated head)', () => {
  it('gives the softmax of the head on the engine’s features, for the classes it names', async () => {
    const { tf } = await nodeTf();
    const backbone = await loadBackbone(directorySource(backboneDir), tf);
    const { manifest } = backbone;
    const dim = manifest.feature_dim;
    const classes = ['cats', 'dogs', 'ducks'];
    const rng = new Mulberry32(3);
    const head = {
      classes: 3,
      dim,
      weight: Float32Array.from({ length: 3 * dim }, () => 5 * rng.normal()),
      bias: Float32Array.from([0.3, -0.2, 0.1]),
    };
    const zip = unzipSync(
      classifierZip(
        readFileSync(join(backboneDir, 'model.json')),
        readFileSync(join(backboneDir, 'weights.bin')),
        manifest,
        head,
        classes,
        'test',
      ),
    );
    expect(Object.keys(zip).sort()).toEqual([
      'classifier/README.md',
      'classifier/classes.json',
      'classifier/model.json',
      'classifier/weights.bin',
    ]);
    expect(JSON.parse(new TextDecoder().decode(zip['classifier/classes.json']))).toEqual(classes);
    const modelJson = JSON.parse(new TextDecoder().decode(zip['classifier/model.json'])) as {
      modelTopology: object;
      weightsManifest: { weights: never[] }[];
      userDefinedMetadata: Record<string, never>;
    };
    const weights = zip['classifier/weights.bin']!;
    const model = await tf.loadGraphModel(
      tf.io.fromMemory({
        modelTopology: modelJson.modelTopology,
        // as loadGraphModel('model.json') reads it: the signature names the one output
        userDefinedMetadata: modelJson.userDefinedMetadata,
        weightSpecs: modelJson.weightsManifest.flatMap((g) => g.weights),
        weightData: weights.buffer.slice(
          weights.byteOffset,
          weights.byteOffset + weights.byteLength,
        ) as ArrayBuffer,
      }),
    );
    const names = readdirSync(join(fixturesDir, 'images')).sort().slice(0, 3);
    const images = await Promise.all(
      names.map(async (n) =>
        decodeImage(new Uint8Array(readFileSync(join(fixturesDir, 'images', n))), n),
      ),
    );
    const size = manifest.input_size;
    const batch = new Float32Array(images.length * size * size * 3);
    images.forEach((image, i) => batch.set(preprocessImage(image, size), i * size * size * 3));
    const x = tf.tensor4d(batch, [images.length, size, size, 3]);
    const y = model.predict(x) as import('@tensorflow/tfjs').Tensor;
    const probabilities = (await y.data()) as Float32Array;
    tf.dispose([x, y]);
    // The engine's path: features → unit norm → head → softmax.
    const features = unitNormalise(
      Float32Array.from((await extractFeatures(backbone, images)).flatMap((f) => Array.from(f))),
      dim,
    );
    images.forEach((_, i) => {
      const logits = [0, 1, 2].map((c) => {
        let z = head.bias[c]!;
        for (let j = 0; j < dim; j++) z += head.weight[c * dim + j]! * features[i * dim + j]!;
        return z;
      });
      const max = Math.max(...logits);
      const total = logits.reduce((a, z) => a + Math.exp(z - max), 0);
      logits.forEach((z, c) =>
        expect(probabilities[i * 3 + c]).toBeCloseTo(Math.exp(z - max) / total, 4),
      );
    });
  }, 60_000);
});
