// Measuring generated weights on held-out images, beside same-run baselines:
// nearest class mean and logistic regression on the support images' backbone
// features (C chosen as the factory's baselines choose it), random init, and for
// CNNs the zoo checkpoint of the nearest seen task and class-mean last layers.
// The CLI's `evaluate` and the page call `evaluateWeights`.

import type * as tfTypes from '@tensorflow/tfjs';
import type { CnnArchLayout, CnnManifest } from './cnn-generator';
import { readVerified, type FileSource } from './files';
import { backgroundIsDark, luma, toGray28 } from './gray28';
import {
  accuracy,
  logisticRegression,
  nearestClassMeanHead,
  predict,
  randomHead,
  stratifiedFolds,
  headOfNetwork,
  labelled,
  unitNormalise,
  type LabelledFeatures,
} from './heads';
import { cnnToOnnx } from './onnx-writer';
import { refineNetworks, type FoldPrior, type LambdaChoice, type RefineSpec } from './refine';
import { trainHead } from './train-head';
import type { DatasetFeatures } from './pipeline';
import type { RgbaImage } from './preprocess';
import { Mulberry32 } from './rng';
import type { RuntimeHost } from './runtime';
import { decodeSafetensors } from './safetensors';
import type { Family, NetworkWeights } from './sampling';

/**
 * The factory's logistic-regression settings (models/d2nwg/baselines.py,
 * BaselineConfig; recorded in models/data/baselines.json): C from this grid by
 * 3-fold cross-validation on the support, ties to the smaller C; at 1 image per
 * class, where no fold can be held out, the C the factory chose on seen datasets.
 */
export const LOGISTIC = { cGrid: [1, 10, 100, 1000], cvFolds: 3, oneShotC: 1000 } as const;

/**
 * C for logistic regression by stratified cross-validation on the support (each
 * class's images dealt to folds in turn); the factory's 1-shot C when a class
 * has a single image.
 */
export function chooseC(support: LabelledFeatures, classes: number): number {
  const folds = stratifiedFolds(support, classes, LOGISTIC.cvFolds);
  if (folds.length === 0) return LOGISTIC.oneShotC;
  const scores = LOGISTIC.cGrid.map(() => 0);
  for (const { train, validation } of folds)
    LOGISTIC.cGrid.forEach(
      (c, g) => (scores[g]! += accuracy(logisticRegression(train, classes, c), validation)),
    );
  return LOGISTIC.cGrid[scores.indexOf(Math.max(...scores))]!;
}

export interface Spread {
  count: number;
  values: number[];
  mean: number;
  std: number;
}

export function spread(values: number[]): Spread {
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const std = Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / values.length);
  return { count: values.length, values, mean, std };
}

/** Baselines fitted on the support's backbone features, scored on the query's. */
export function featureBaselines(
  support: LabelledFeatures,
  query: LabelledFeatures,
  classes: number,
): { nearestClassMean: number; logisticRegression: { accuracy: number; c: number } } {
  const c = chooseC(support, classes);
  return {
    nearestClassMean: accuracy(nearestClassMeanHead(support, classes), query),
    logisticRegression: { accuracy: accuracy(logisticRegression(support, classes, c), query), c },
  };
}

function argmax(logits: Float32Array, rows: number, classes: number): Int32Array {
  const out = new Int32Array(rows);
  for (let i = 0; i < rows; i++) {
    let best = 0;
    for (let c = 1; c < classes; c++)
      if (logits[i * classes + c]! > logits[i * classes + best]!) best = c;
    out[i] = best;
  }
  return out;
}

function hitRate(predicted: Int32Array, labels: Int32Array): number {
  let hits = 0;
  predicted.forEach((p, i) => (hits += p === labels[i] ? 1 : 0));
  return hits / labels.length;
}

/** The best sample's predictions, paired with each query image's name and class. */
function bestSample(
  predictions: Int32Array[],
  labels: Int32Array,
  query: DatasetFeatures,
): Evaluation['best'] {
  const accuracies = predictions.map((p) => hitRate(p, labels));
  const sample = accuracies.indexOf(Math.max(...accuracies));
  const names = query.names?.flat();
  return {
    sample,
    accuracy: accuracies[sample]!,
    images: Array.from(labels, (truth, i) => ({
      name: names?.[i] ?? null,
      truth,
      predicted: predictions[sample]![i]!,
    })),
  };
}

/** A pretrained head checked against the support's classes (same names, same order). */
export function pretrainedHead(p: PretrainedHead, classes: readonly string[], dim: number) {
  if (JSON.stringify(p.classes) !== JSON.stringify(classes))
    throw new Error(
      `the pretrained head is for classes ${p.classes.join(', ')}, not ${classes.join(', ')}`,
    );
  if (p.weight.length !== classes.length * dim || p.bias.length !== classes.length)
    throw new Error(`the pretrained head is not [${classes.length}, ${dim}]`);
  return { classes: classes.length, dim, weight: p.weight, bias: p.bias };
}

/** PyTorch's default initialisation, U(±1/√fan_in) for weights and biases, from a seeded stream. */
export function randomCnn(layout: CnnArchLayout, classes: number, rng: Mulberry32): NetworkWeights {
  const out: NetworkWeights = {};
  for (const t of layout.tensors) {
    const shape = t.name.startsWith(`${layout.head_layer}.`)
      ? [classes, ...t.shape.slice(1)]
      : t.shape;
    const weightShape = layout.tensors.find(
      (w) => w.name === t.name.replace(/\.bias$/, '.weight'),
    )!.shape;
    const bound = 1 / Math.sqrt(weightShape.slice(1).reduce((a, b) => a * b, 1));
    const count = shape.reduce((a, b) => a * b, 1);
    out[t.name] = {
      shape,
      data: Float32Array.from({ length: count }, () => (rng.uniform() * 2 - 1) * bound),
    };
  }
  return out;
}

/** Output `output` [count × width] of a whole-CNN graph on images [count, 1, 28, 28]. */
export async function runCnn(
  host: RuntimeHost,
  graph: Uint8Array,
  pixels: Float32Array,
  count: number,
  output: 'logits' | 'features' = 'logits',
): Promise<Float32Array> {
  // The host's plain CPU backend: wasm in the page, native cpu in Node.
  const backend = host.name === 'browser' ? 'wasm' : 'cpu';
  const session = await host.ort.InferenceSession.create(graph, { executionProviders: [backend] });
  try {
    const out = await session.run({
      images: new host.ort.Tensor('float32', pixels, [count, 1, 28, 28]),
    });
    const value = out[output];
    if (value === undefined) throw new Error(`the CNN graph has no output named ${output}`);
    return value.data as Float32Array;
  } finally {
    await session.release();
  }
}

/** Images mostly bright on dark (as the factory decides per dataset: by majority). */
export function darkBackground(images: readonly RgbaImage[]): boolean {
  const dark = images.filter((image) => backgroundIsDark(luma(image), image.width, image.height));
  return dark.length * 2 > images.length;
}

export interface CnnEvaluationInputs {
  host: RuntimeHost;
  manifest: CnnManifest;
  /** The cnn release folder (for the zoo reference checkpoints). */
  source: FileSource;
  arch: string;
}

export interface Evaluation {
  family: Family;
  arch: string;
  classes: string[];
  supportImages: number[];
  queryImages: number[];
  generated: Spread;
  /** head: each generated head refined toward the support (refine.ts), with the λ chosen. */
  generatedRefined?: Spread & LambdaChoice;
  nearestClassMean: number;
  logisticRegression: { accuracy: number; c: number };
  /** head: a pretrained head for these classes (demo datasets), when one was given. */
  pretrained?: { accuracy: number; kind: string; source: string };
  /** A softmax head trained here with tfjs (train-head.ts), when tfjs was given. */
  trainedHead?: { accuracy: number; epochs: number; trainMs: number };
  randomInit: Spread;
  /** cnn: each body with a nearest-class-mean last layer on its own penultimate features. */
  withPrototypeLastLayer?: {
    generated: Spread;
    randomInit: Spread;
    pretrained: { task: string; accuracy: number };
  };
  darkBackground?: boolean;
  /** The generated sample with the best held-out accuracy: its prediction for every query image. */
  best: {
    sample: number;
    accuracy: number;
    /** Per query image, in class order: its name (when known), true class and predicted class. */
    images: { name: string | null; truth: number; predicted: number }[];
  };
}

/** A head trained elsewhere on these classes (a zoo checkpoint), rows in the support's class order. */
export interface PretrainedHead {
  classes: string[];
  weight: Float32Array;
  bias: Float32Array;
  /** What it is ("zoo checkpoint of this task", …) and where it came from. */
  kind: string;
  source: string;
}

const RANDOM_NETWORKS = 10;

/**
 * Scores generated networks on `query` beside the baselines. Support and query
 * are the same classes in the same order; for the cnn family both must carry
 * their decoded images.
 */
export async function evaluateWeights(
  family: Family,
  networks: readonly NetworkWeights[],
  support: DatasetFeatures,
  query: DatasetFeatures,
  cnn?: CnnEvaluationInputs,
  {
    tf,
    refine,
    foldPrior,
    refined: given,
    pretrained,
  }: {
    tf?: typeof tfTypes;
    /** head: the manifest's rule for "generated + refined". */
    refine?: RefineSpec;
    /** head: the rule's cross-validation prior for a fold (its cv_prior "fold_reference"). */
    foldPrior?: FoldPrior;
    /** head: the refined heads generation already made from these networks on this support. */
    refined?: { networks: readonly NetworkWeights[]; choice: LambdaChoice };
    /** head: a pretrained head to score beside them. */
    pretrained?: PretrainedHead;
  } = {},
): Promise<Evaluation> {
  if (JSON.stringify(support.classes) !== JSON.stringify(query.classes))
    throw new Error(
      `the query classes (${query.classes.join(', ')}) differ from the support classes (${support.classes.join(', ')})`,
    );
  const classes = support.classes.length;
  const s = labelled(support.perClass, support.featureDim);
  const q = labelled(query.perClass, query.featureDim);
  const trained = tf === undefined ? undefined : await trainHead(tf, s, classes);
  const base = {
    family,
    classes: support.classes,
    supportImages: support.perClass.map((m) => m.length / support.featureDim),
    queryImages: query.perClass.map((m) => m.length / query.featureDim),
    ...featureBaselines(s, q, classes),
    ...(trained
      ? {
          trainedHead: {
            accuracy: accuracy(trained.head, q),
            epochs: trained.epochs,
            trainMs: trained.trainMs,
          },
        }
      : {}),
  };
  if (family === 'head') {
    const headOf = (n: NetworkWeights) => headOfNetwork(n, classes, q.dim);
    const rng = new Mulberry32(0);
    const random = Array.from({ length: RANDOM_NETWORKS }, () =>
      accuracy(
        randomHead(classes, q.dim, () => rng.normal()),
        q,
      ),
    );
    const heads = networks.map(headOf);
    const predictions = heads.map((h) => predict(h, q.features));
    // The same refine as generation's (pipeline.ts), from the plain generated heads.
    if (given === undefined && refine === undefined)
      throw new Error('evaluating heads needs the manifest’s refine rule');
    const { networks: refinedNetworks, choice } =
      given ?? refineNetworks(networks, support.perClass, support.featureDim, refine!, foldPrior);
    const refined = refinedNetworks.map((n) => accuracy(headOf(n), q));
    return {
      ...base,
      arch: 'linear',
      generated: spread(predictions.map((p) => hitRate(p, q.labels))),
      generatedRefined: { ...spread(refined), ...choice },
      ...(pretrained !== undefined
        ? {
            pretrained: {
              accuracy: accuracy(pretrainedHead(pretrained, support.classes, q.dim), q),
              kind: pretrained.kind,
              source: pretrained.source,
            },
          }
        : {}),
      randomInit: spread(random),
      best: bestSample(predictions, q.labels, query),
    };
  }
  if (cnn === undefined || support.decoded === undefined || query.decoded === undefined)
    throw new Error('evaluating CNNs needs the cnn release and the decoded images');
  const { host, manifest, arch } = cnn;
  const layout = manifest.layout.archs[arch];
  if (layout === undefined) throw new Error(`this release has no CNN architecture "${arch}"`);
  const supportImages = support.decoded.flat();
  const queryImages = query.decoded.flat();
  const dark = darkBackground([...supportImages, ...queryImages]);
  const gray = (images: RgbaImage[]) => {
    const pixels = new Float32Array(images.length * 28 * 28);
    images.forEach((image, i) => pixels.set(toGray28(image, dark), i * 28 * 28));
    return pixels;
  };
  const queryPixels = gray(queryImages);
  const supportPixels = gray(supportImages);
  const predictCnn = async (net: NetworkWeights) =>
    argmax(
      await runCnn(host, cnnToOnnx(layout, net), queryPixels, queryImages.length),
      queryImages.length,
      classes,
    );
  const zeroShot = async (net: NetworkWeights) => hitRate(await predictCnn(net), q.labels);
  /** The body with its last layer replaced by class-mean prototypes of its penultimate features. */
  const prototypeAccuracy = async (net: NetworkWeights): Promise<number> => {
    const graph = cnnToOnnx(layout, net, '', { penultimate: true });
    const dim = layout.head_in_features;
    const features = async (pixels: Float32Array, n: number) =>
      unitNormalise(await runCnn(host, graph, pixels, n, 'features'), dim);
    const train = {
      dim,
      features: await features(supportPixels, supportImages.length),
      labels: s.labels,
    };
    const test = {
      dim,
      features: await features(queryPixels, queryImages.length),
      labels: q.labels,
    };
    return accuracy(nearestClassMeanHead(train, classes), test);
  };
  const predictions: Int32Array[] = [];
  const generatedPrototypes: number[] = [];
  for (const net of networks) {
    predictions.push(await predictCnn(net));
    generatedPrototypes.push(await prototypeAccuracy(net));
  }
  const rng = new Mulberry32(0);
  const random: number[] = [];
  const randomPrototypes: number[] = [];
  for (let r = 0; r < RANDOM_NETWORKS; r++) {
    const net = randomCnn(layout, classes, rng);
    random.push(await zeroShot(net));
    randomPrototypes.push(await prototypeAccuracy(net));
  }
  const nearest = await nearestZooCheckpoint(cnn, layout, s);
  return {
    ...base,
    arch,
    generated: spread(predictions.map((p) => hitRate(p, q.labels))),
    randomInit: spread(random),
    best: bestSample(predictions, q.labels, query),
    withPrototypeLastLayer: {
      generated: spread(generatedPrototypes),
      randomInit: spread(randomPrototypes),
      pretrained: { task: nearest.task, accuracy: await prototypeAccuracy(nearest.network) },
    },
    darkBackground: dark,
  };
}

/** "Pretrained": the zoo checkpoint of the seen task whose mean feature is nearest the support's. */
async function nearestZooCheckpoint(
  cnn: CnnEvaluationInputs,
  layout: CnnArchLayout,
  support: LabelledFeatures,
): Promise<{ task: string; network: NetworkWeights }> {
  const entry = cnn.manifest.zoo_reference;
  const reference = decodeSafetensors(await readVerified(cnn.source, entry.file, entry));
  const taskIds = JSON.parse(reference.metadata.tasks ?? '[]') as string[];
  const { dim } = support;
  const supportMean = new Float32Array(dim);
  for (let i = 0; i < support.labels.length; i++)
    for (let j = 0; j < dim; j++) supportMean[j]! += support.features[i * dim + j]!;
  const means = reference.tensors.task_mean!.data;
  const scores = taskIds.map((_, t) => {
    let score = 0;
    for (let j = 0; j < dim; j++) score += means[t * dim + j]! * supportMean[j]!;
    return score;
  });
  const nearest = scores.indexOf(Math.max(...scores));
  const network: NetworkWeights = {};
  for (const t of layout.tensors) {
    const all = reference.tensors[`${cnn.arch}/${t.name}`]!;
    const size = all.data.length / all.shape[0]!;
    network[t.name] = {
      shape: all.shape.slice(1),
      data: all.data.slice(nearest * size, (nearest + 1) * size),
    };
  }
  return { task: taskIds[nearest] ?? '', network };
}
