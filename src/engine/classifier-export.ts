// A whole image classifier to download: the release's backbone (a tfjs graph
// model) with a generated head appended after its feature node, as one tfjs
// graph model folder in a zip. The appended nodes compute exactly what the
// engine computes: L2-normalise the 1,792 features, then logits = x·Wᵀ + b,
// then softmax. The backbone's own nodes are left as they are; only the
// model's signature changes, so `model.predict` returns the new probabilities.

import { zipSync } from 'fflate';
import type { BackboneManifest } from './backbone';
import { backboneClassifierOnnx } from './backbone-onnx';
import type { Head } from './heads';

interface TfjsNode {
  name: string;
  op: string;
  input?: string[];
  attr?: Record<string, unknown>;
}

interface TfjsModelJson {
  format: string;
  userDefinedMetadata?: Record<string, unknown>;
  modelTopology: { node: TfjsNode[]; [key: string]: unknown };
  weightsManifest: {
    paths: string[];
    weights: { name: string; shape: number[]; dtype: string }[];
  }[];
  [key: string]: unknown;
}

const PREFIX = 'd2nwg';
const float = { type: 'DT_FLOAT' };

function constNode(name: string, dtype: 'DT_FLOAT' | 'DT_INT32', shape: number[]): TfjsNode {
  return {
    name,
    op: 'Const',
    attr: {
      value: {
        tensor: { dtype, tensorShape: { dim: shape.map((size) => ({ size: String(size) })) } },
      },
      dtype: { type: dtype },
    },
  };
}

/** The backbone graph with the head appended; weights.bin gains the head's tensors at its end. */
export function classifierGraphModel(
  modelJsonBytes: Uint8Array,
  weights: Uint8Array,
  backbone: BackboneManifest,
  head: Head,
  classes: readonly string[],
): { modelJson: TfjsModelJson; weights: Uint8Array } {
  const model = JSON.parse(new TextDecoder().decode(modelJsonBytes)) as TfjsModelJson;
  if (head.dim !== backbone.feature_dim)
    throw new Error(
      `the head takes ${head.dim} features; the backbone gives ${backbone.feature_dim}`,
    );
  if (head.classes !== classes.length) throw new Error('one class name per row of the head');
  const [group] = model.weightsManifest;
  if (group === undefined || model.weightsManifest.length !== 1)
    throw new Error('the backbone’s weights are not one weights.bin');
  const { dim, classes: count } = head;
  // tfjs layout: MatMul(x [N, dim], w [dim, classes]).
  const transposed = new Float32Array(dim * count);
  for (let c = 0; c < count; c++)
    for (let j = 0; j < dim; j++) transposed[j * count + c] = head.weight[c * dim + j]!;
  const added = [
    { name: `${PREFIX}/sum_axis`, shape: [1], dtype: 'int32', data: new Int32Array([1]) },
    { name: `${PREFIX}/epsilon`, shape: [], dtype: 'float32', data: new Float32Array([1e-24]) },
    { name: `${PREFIX}/weight`, shape: [dim, count], dtype: 'float32', data: transposed },
    {
      name: `${PREFIX}/bias`,
      shape: [count],
      dtype: 'float32',
      data: Float32Array.from(head.bias),
    },
  ] as const;
  const features = backbone.feature_node;
  model.modelTopology.node.push(
    constNode(`${PREFIX}/sum_axis`, 'DT_INT32', [1]),
    constNode(`${PREFIX}/epsilon`, 'DT_FLOAT', []),
    constNode(`${PREFIX}/weight`, 'DT_FLOAT', [dim, count]),
    constNode(`${PREFIX}/bias`, 'DT_FLOAT', [count]),
    { name: `${PREFIX}/square`, op: 'Square', input: [features], attr: { T: float } },
    {
      name: `${PREFIX}/sum`,
      op: 'Sum',
      input: [`${PREFIX}/square`, `${PREFIX}/sum_axis`],
      attr: { T: float, Tidx: { type: 'DT_INT32' }, keep_dims: { b: true } },
    },
    // ‖x‖² floored at 1e-24: the engine's max(‖x‖, 1e-12).
    {
      name: `${PREFIX}/floored`,
      op: 'Maximum',
      input: [`${PREFIX}/sum`, `${PREFIX}/epsilon`],
      attr: { T: float },
    },
    {
      name: `${PREFIX}/inverse_norm`,
      op: 'Rsqrt',
      input: [`${PREFIX}/floored`],
      attr: { T: float },
    },
    {
      name: `${PREFIX}/unit_features`,
      op: 'Mul',
      input: [features, `${PREFIX}/inverse_norm`],
      attr: { T: float },
    },
    {
      name: `${PREFIX}/matmul`,
      op: 'MatMul',
      input: [`${PREFIX}/unit_features`, `${PREFIX}/weight`],
      attr: { T: float, transpose_a: { b: false }, transpose_b: { b: false } },
    },
    {
      name: `${PREFIX}/logits`,
      op: 'BiasAdd',
      input: [`${PREFIX}/matmul`, `${PREFIX}/bias`],
      attr: { T: float },
    },
    {
      name: `${PREFIX}/probabilities`,
      op: 'Softmax',
      input: [`${PREFIX}/logits`],
      attr: { T: float },
    },
  );
  group.weights.push(
    ...added.map(({ name, shape, dtype }) => ({ name, shape: [...shape], dtype })),
  );
  const extra = added.reduce((n, t) => n + t.data.byteLength, 0);
  const out = new Uint8Array(weights.byteLength + extra);
  out.set(weights);
  let at = weights.byteLength;
  for (const t of added) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
    at += t.data.byteLength;
  }
  const shape = (dims: number[]) => ({ dim: dims.map((size) => ({ size: String(size) })) });
  model.userDefinedMetadata = {
    ...model.userDefinedMetadata,
    signature: {
      inputs: {
        [`${backbone.input_node}:0`]: {
          name: `${backbone.input_node}:0`,
          dtype: 'DT_FLOAT',
          tensorShape: shape([-1, backbone.input_size, backbone.input_size, 3]),
        },
      },
      outputs: {
        [`${PREFIX}/probabilities:0`]: {
          name: `${PREFIX}/probabilities:0`,
          dtype: 'DT_FLOAT',
          tensorShape: shape([-1, count]),
        },
      },
    },
    classes: [...classes],
  };
  return { modelJson: model, weights: out };
}

/** How to use the folder, for the zip's README. */
export function classifierReadme(
  backbone: BackboneManifest,
  classes: readonly string[],
  about: string,
): string {
  return [
    '# Image classifier (D2NWG Web)',
    '',
    about,
    '',
    `A TensorFlow.js graph model: the backbone \`${backbone.id}\` with a generated head for ${classes.length} classes.`,
    '`model.predict(images)` returns class probabilities [N, classes] in the order of `classes.json`.',
    '',
    `Input: [N, ${backbone.input_size}, ${backbone.input_size}, 3] float32 RGB in [0, 1]. For the same numbers as the page,`,
    `composite transparency on white and letterbox into ${backbone.input_size}×${backbone.input_size} (aspect kept, white bars)`,
    'with an antialiased bilinear resize; a plain resize works too, a little less exactly.',
    '',
    '```js',
    "import * as tf from '@tensorflow/tfjs';",
    "const model = await tf.loadGraphModel('model.json');",
    "const classes = await (await fetch('classes.json')).json();",
    `const x = tf.tidy(() => tf.image.resizeBilinear(tf.browser.fromPixels(img), [${backbone.input_size}, ${backbone.input_size}]).div(255).expandDims());`,
    'const probabilities = await model.predict(x).data();',
    'console.log(classes[probabilities.indexOf(Math.max(...probabilities))]);',
    '```',
    '',
  ].join('\n');
}

/** How to use the ONNX classifier, for its zip's README. */
export function onnxClassifierReadme(
  backbone: BackboneManifest,
  classes: readonly string[],
  about: string,
): string {
  const size = backbone.input_size;
  return [
    '# Image classifier (D2NWG Web), ONNX',
    '',
    about,
    '',
    `One ONNX graph (opset 17): the backbone \`${backbone.id}\` and a generated head for ${classes.length} classes.`,
    `Input \`images\`: [N, ${size}, ${size}, 3] float32 RGB in [0, 1], NHWC (composite transparency on white and letterbox`,
    `into ${size}×${size}, aspect kept, white bars, for the page's exact numbers). Outputs \`probabilities\` and \`logits\``,
    '[N, classes], in the order of `classes.json` (also in the model metadata, key `classes`).',
    '',
    '```python',
    'import json, numpy as np, onnxruntime as ort',
    "session = ort.InferenceSession('classifier.onnx')",
    "classes = json.load(open('classes.json'))",
    `images = np.zeros((1, ${size}, ${size}, 3), np.float32)  # your preprocessed images`,
    "probabilities = session.run(['probabilities'], {'images': images})[0]",
    'print(classes[int(probabilities[0].argmax())])',
    '```',
    '',
  ].join('\n');
}

/** The ONNX classifier's zip: classifier.onnx, classes.json, README.md. */
export function onnxClassifierZip(
  modelJsonBytes: Uint8Array,
  weights: Uint8Array,
  backbone: BackboneManifest,
  head: Head,
  classes: readonly string[],
  about: string,
): Uint8Array {
  const graph = backboneClassifierOnnx(
    modelJsonBytes,
    weights,
    backbone,
    head,
    [...classes],
    about,
  );
  const text = (s: string) => new TextEncoder().encode(s);
  return zipSync({
    'classifier/classifier.onnx': graph,
    'classifier/classes.json': text(`${JSON.stringify(classes)}\n`),
    'classifier/README.md': text(onnxClassifierReadme(backbone, classes, about)),
  });
}

/** The zip a person downloads: model.json, weights.bin, classes.json, README.md. */
export function classifierZip(
  modelJsonBytes: Uint8Array,
  weights: Uint8Array,
  backbone: BackboneManifest,
  head: Head,
  classes: readonly string[],
  about: string,
): Uint8Array {
  const built = classifierGraphModel(modelJsonBytes, weights, backbone, head, classes);
  const text = (s: string) => new TextEncoder().encode(s);
  return zipSync({
    'classifier/model.json': text(JSON.stringify(built.modelJson)),
    'classifier/weights.bin': built.weights,
    'classifier/classes.json': text(`${JSON.stringify(classes)}\n`),
    'classifier/README.md': text(classifierReadme(backbone, classes, about)),
  });
}
