// The frozen image backbone, declared by a manifest in the release so that a
// later release can swap it: a tfjs graph model executed up to its feature
// node. The same code computes features in the page (WebGPU or wasm), in the
// Node CLI and for the factory's feature cache.

import type * as tfTypes from '@tensorflow/tfjs';
import { readJson, readVerified, type FileSource } from './files';
import { preprocessImage, type RgbaImage } from './preprocess';
import { array, integer, literal, number, object, parse, string } from './schema';

type Tf = typeof tfTypes;

const fileRecord = object({ file: string, bytes: integer, sha256: string });

export const backboneManifestSchema = object({
  id: string,
  format: literal('tfjs-graph-model'),
  model_file: fileRecord,
  weights_file: fileRecord,
  input_node: string,
  input_size: integer,
  feature_node: string,
  feature_dim: integer,
  preprocessing: object({
    alpha: literal('composite-on-white'),
    resize: literal('letterbox'),
    resample: literal('triangle-antialias'),
    pad_value: number,
    value_range: array(number),
  }),
  source: object({
    npm_package: string,
    version: string,
    license: string,
    files: array(object({ path: string, sha256: string })),
  }),
  rebuild_command: string,
});
export type BackboneManifest = ReturnType<typeof backboneManifestSchema>;

export interface Backbone {
  readonly manifest: BackboneManifest;
  readonly model: tfTypes.GraphModel;
  readonly tf: Tf;
}

/** Loads the backbone from a release folder (backbone.json, model.json, weights.bin). */
export async function loadBackbone(source: FileSource, tf: Tf): Promise<Backbone> {
  const manifest = parse(
    backboneManifestSchema,
    await readJson(source, 'backbone.json'),
    'backbone.json',
  );
  const modelBytes = await readVerified(source, manifest.model_file.file, manifest.model_file);
  const weights = await readVerified(source, manifest.weights_file.file, manifest.weights_file);
  const modelJson = JSON.parse(new TextDecoder().decode(modelBytes)) as {
    modelTopology: object;
    weightsManifest: { weights: tfTypes.io.WeightsManifestEntry[] }[];
  };
  const weightData = weights.buffer.slice(
    weights.byteOffset,
    weights.byteOffset + weights.byteLength,
  );
  const model = await tf.loadGraphModel(
    tf.io.fromMemory({
      modelTopology: modelJson.modelTopology,
      weightSpecs: modelJson.weightsManifest.flatMap((group) => group.weights),
      weightData: weightData as ArrayBuffer,
    }),
  );
  return { manifest, model, tf };
}

/** Features of preprocessed images ([size, size, 3] each): one [featureDim] vector per image. */
export async function featuresOfInputs(
  backbone: Backbone,
  inputs: Float32Array[],
): Promise<Float32Array[]> {
  const { tf, model, manifest } = backbone;
  const size = manifest.input_size;
  const batch = new Float32Array(inputs.length * size * size * 3);
  inputs.forEach((input, i) => batch.set(input, i * size * size * 3));
  const x = tf.tensor4d(batch, [inputs.length, size, size, 3]);
  try {
    const y = model.execute({ [manifest.input_node]: x }, manifest.feature_node) as tfTypes.Tensor;
    const flat = (await y.data()) as Float32Array;
    y.dispose();
    const dim = manifest.feature_dim;
    if (flat.length !== inputs.length * dim) {
      throw new Error(
        `the feature node gave ${flat.length / inputs.length} values per image, expected ${dim}`,
      );
    }
    return inputs.map((_, i) => flat.slice(i * dim, (i + 1) * dim));
  } finally {
    x.dispose();
  }
}

/** Features of decoded images, preprocessed and run in batches of `batchSize`. */
export async function extractFeatures(
  backbone: Backbone,
  images: RgbaImage[],
  { batchSize = 16, onBatch }: { batchSize?: number; onBatch?: (done: number) => void } = {},
): Promise<Float32Array[]> {
  const features: Float32Array[] = [];
  for (let start = 0; start < images.length; start += batchSize) {
    const inputs = images
      .slice(start, start + batchSize)
      .map((image) => preprocessImage(image, backbone.manifest.input_size));
    features.push(...(await featuresOfInputs(backbone, inputs)));
    onBatch?.(features.length);
  }
  return features;
}
