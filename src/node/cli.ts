// The command-line tool: generate classifier heads or whole small CNNs for a
// folder of images, and measure them against same-run baselines.
//
//   d2nwg generate --data <folder> --out <dir> [--family head|cnn] [--arch cnn-s|cnn-w]
//                  [--samples N] [--steps K] [--eta E] [--guidance G] [--temperature T] [--seed S]
//                  [--backend auto|cpu|webgpu] [--precision fp32|fp16|int8]
//   d2nwg evaluate --support <folder> --query <folder> --weights <dir> [--json]
//
// A folder is one sub-folder of images per class; classes are the sorted
// sub-folder names. Progress goes to stderr; a mistake prints one line and exits 1.

import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { extractFeatures, loadBackbone } from '../engine/backbone';
import {
  CnnGenerator,
  loadCnnGeneratorFiles,
  type CnnArchLayout,
  type CnnGeneratorFiles,
  type CnnWeights,
} from '../engine/cnn-generator';
import { backgroundIsDark, luma, toGray28 } from '../engine/gray28';
import {
  HeadGenerator,
  loadHeadGeneratorFiles,
  type HeadGeneratorFiles,
} from '../engine/head-generator';
import {
  accuracy,
  logisticRegression,
  nearestClassMeanHead,
  randomHead,
  unitNormalise,
  type LabelledFeatures,
} from '../engine/heads';
import { readVerified } from '../engine/files';
import { directorySource, nodeHost } from '../engine/node-host';
import { Mulberry32 } from '../engine/rng';
import {
  describeBackend,
  errorMessage,
  parseBackendRequest,
  selectBackend,
} from '../engine/runtime';
import { cnnToOnnx, headToOnnx } from '../engine/onnx-writer';
import { PRECISIONS, type Precision } from '../engine/sampling';
import type { RgbaImage } from '../engine/preprocess';
import { decodeSafetensors, encodeSafetensors, type NamedTensor } from '../engine/safetensors';
import { readClassFolder, FolderError, type ClassFolder } from './class-folder';
import { decodeImage } from './images';
import { cnnLogits } from './onnx-cnn';
import { nodeTf } from './tf-node';

const repoRoot = resolve(import.meta.dirname, '../..');
const releaseDir = join(repoRoot, 'models/release');

class UsageError extends Error {}

function progress(message: string): void {
  process.stderr.write(`${message}\n`);
}

interface FolderFeatures {
  folder: ClassFolder;
  dim: number;
  /** Per class: [K_c × dim] features of the images that decoded. */
  perClass: Float32Array[];
  unreadable: string[];
  featureMs: number;
  /** Images whose border is mostly dark (for the cnn family's polarity). */
  darkImages: number;
  /** Per class: the decoded images, when asked for (the cnn family's 28×28 inputs). */
  decoded?: RgbaImage[][];
}

async function folderFeatures(root: string, { keepImages = false } = {}): Promise<FolderFeatures> {
  const folder = readClassFolder(root);
  const started = performance.now();
  const { tf } = await nodeTf();
  const backbone = await loadBackbone(directorySource(join(releaseDir, 'backbone')), tf);
  const dim = backbone.manifest.feature_dim;
  const unreadable: string[] = [];
  const perClass: Float32Array[] = [];
  const decoded: RgbaImage[][] = [];
  let darkImages = 0;
  const total = folder.images.reduce((a, b) => a + b.length, 0);
  let done = 0;
  for (const [c, files] of folder.images.entries()) {
    const images: RgbaImage[] = [];
    for (const file of files) {
      try {
        images.push(await decodeImage(new Uint8Array(await readFile(file)), file));
      } catch (error) {
        unreadable.push(errorMessage(error));
      }
    }
    if (images.length === 0) {
      throw new FolderError(
        `no image of class "${folder.classes[c]}" could be read: ${unreadable.at(-1)}`,
      );
    }
    for (const image of images)
      if (backgroundIsDark(luma(image), image.width, image.height)) darkImages++;
    if (keepImages) decoded.push(images);
    const features = await extractFeatures(backbone, images, {
      onBatch: (n) => progress(`features: ${done + n}/${total} images`),
    });
    done += files.length;
    const matrix = new Float32Array(features.length * dim);
    features.forEach((f, i) => matrix.set(f, i * dim));
    perClass.push(matrix);
  }
  backbone.model.dispose();
  for (const message of unreadable) progress(`skipped: ${message}`);
  return {
    folder,
    dim,
    perClass,
    unreadable,
    featureMs: performance.now() - started,
    darkImages,
    ...(keepImages ? { decoded } : {}),
  };
}

function labelled(features: FolderFeatures): LabelledFeatures {
  const { dim, perClass } = features;
  const rows = perClass.reduce((a, m) => a + m.length / dim, 0);
  const all = new Float32Array(rows * dim);
  const labels = new Int32Array(rows);
  let at = 0;
  perClass.forEach((m, c) => {
    all.set(m, at * dim);
    labels.fill(c, at, at + m.length / dim);
    at += m.length / dim;
  });
  return { dim, features: unitNormalise(all, dim), labels };
}

function number(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n)) throw new UsageError(`--${name} must be a number, got "${value}"`);
  return n;
}

function modelCard(report: GenerateReport, sample: number): string {
  const what =
    report.family === 'head'
      ? [
          `It is a linear head \`logits = features @ weight.T + bias\` on the L2-normalised ${report.feature_dim}-d features of ` +
            `the backbone \`${report.backbone}\` (models/release/backbone/), with the same preprocessing. ` +
            `\`sample-${sample}.onnx\` takes the raw backbone features [N, ${report.feature_dim}] and normalises them itself.`,
        ]
      : [
          `It is the whole CNN \`${report.arch}\` (every weight generated; PyTorch names in the safetensors file). ` +
            `\`sample-${sample}.onnx\` takes images [N, 1, 28, 28]: grayscale in [0, 1], ink high and background 0 ` +
            `(this folder's images were ${report.dark_background ? 'bright on dark, kept' : 'dark on light, inverted'}); ` +
            "the conversion is `toGray28` in src/engine/gray28.ts (the factory's `to_grayscale_28`).",
          '',
          `The generator was conditioned on the images' ${report.feature_dim}-d features from the backbone \`${report.backbone}\`.`,
        ];
  return [
    `# Generated ${report.family === 'head' ? 'classifier head' : `CNN ${report.arch}`} (sample ${sample})`,
    '',
    `Generated by D2NWG Web ${report.generator_release} (${report.family} family) for the ${report.classes.length} classes of \`${report.data}\` ` +
      `(${report.images_per_class.join(', ')} images per class), seed ${report.settings.seed}, ` +
      `${report.settings.steps} DDIM steps, η ${report.settings.eta}, guidance ${report.settings.guidance}, ` +
      `temperature ${report.settings.temperature}, on ${report.backend}.`,
    '',
    ...what,
    '',
    '| output | class |',
    '|---|---|',
    ...report.classes.map((name, i) => `| ${i} | ${name} |`),
    '',
    'Accuracy: not measured at generation; run `d2nwg evaluate --support … --query … --weights <this folder>`.',
    '',
  ].join('\n');
}

interface GenerateReport {
  data: string;
  family: 'head' | 'cnn';
  arch?: string;
  dark_background?: boolean;
  classes: string[];
  images_per_class: number[];
  unreadable: string[];
  skipped_files: string[];
  backend: string;
  precision: Precision;
  generator_release: string;
  backbone: string;
  feature_dim: number;
  settings: {
    samples: number;
    steps: number;
    eta: number;
    guidance: number;
    seed: number;
    temperature: number;
  };
  timings_ms: { features: number; encode: number; denoise: number; decode: number };
  samples: string[];
}

/** One generated network, in the formats a user takes elsewhere. */
interface SampleFiles {
  tensors: Record<string, NamedTensor>;
  onnx: Uint8Array;
}

async function generate(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      data: { type: 'string' },
      out: { type: 'string' },
      family: { type: 'string', default: 'head' },
      arch: { type: 'string' },
      samples: { type: 'string' },
      steps: { type: 'string' },
      eta: { type: 'string' },
      guidance: { type: 'string' },
      temperature: { type: 'string' },
      seed: { type: 'string' },
      backend: { type: 'string', default: 'auto' },
      precision: { type: 'string', default: 'fp32' },
    },
  });
  if (!values.data || !values.out)
    throw new UsageError('generate needs --data <folder> and --out <dir>');
  const family = values.family;
  if (family !== 'head' && family !== 'cnn')
    throw new UsageError(`unknown --family "${family}"; choose head or cnn`);
  if (family === 'head' && values.arch !== undefined)
    throw new UsageError('--arch is for the cnn family (cnn-s or cnn-w)');
  const precision = values.precision as Precision;
  if (!(PRECISIONS as readonly string[]).includes(precision))
    throw new UsageError(
      `unknown --precision "${precision}"; choose one of ${PRECISIONS.join(', ')}`,
    );
  const files =
    family === 'head'
      ? await loadHeadGeneratorFiles(directorySource(join(releaseDir, 'head')), precision)
      : await loadCnnGeneratorFiles(directorySource(join(releaseDir, 'cnn')), precision);
  const arch = family === 'cnn' ? (values.arch ?? 'cnn-w') : undefined;
  if (files.manifest.family === 'cnn' && !(arch! in files.manifest.layout.archs))
    throw new UsageError(
      `unknown --arch "${arch}"; choose one of ${Object.keys(files.manifest.layout.archs).sort().join(', ')}`,
    );
  const defaults = files.manifest.sampling_defaults;
  const settings = {
    samples: number(values.samples, 'samples', defaults.samples),
    steps: number(values.steps, 'steps', defaults.steps),
    eta: number(values.eta, 'eta', defaults.eta),
    guidance: number(values.guidance, 'guidance', defaults.guidance),
    temperature: number(values.temperature, 'temperature', defaults.temperature),
    seed: number(values.seed, 'seed', defaults.seed),
  };
  const features = await folderFeatures(resolve(values.data));
  const { folder } = features;
  if (folder.classes.length > files.manifest.max_classes) {
    throw new UsageError(
      `${folder.classes.length} classes; this release generates ${family === 'head' ? 'heads' : 'CNNs'} of up to ${files.manifest.max_classes}`,
    );
  }
  const { selected, probeSession } = await selectBackend(
    parseBackendRequest(values.backend),
    nodeHost,
    files.decoder,
  );
  await probeSession.release();
  const control = {
    onProgress: (p: { stage: string; done: number; total: number }) => {
      if (p.stage === 'denoise' && (p.done % 10 === 0 || p.done === p.total))
        progress(`generating: DDIM step ${p.done}/${p.total}`);
    },
  };
  const dim = features.dim;
  const classes = folder.classes.length;
  const doc = `D2NWG Web ${files.manifest.release_version}, ${family} family, seed ${settings.seed}; classes ${JSON.stringify(folder.classes)}`;
  let samples: SampleFiles[];
  let timings: { encode: number; denoise: number; decode: number };
  if (family === 'head') {
    const generator = await HeadGenerator.create(files as HeadGeneratorFiles, selected);
    try {
      const heads = await generator.generate(features.perClass, settings, control);
      timings = heads.timingsMs;
      samples = Array.from({ length: heads.samples }, (_, s) => {
        const weight = heads.weight.slice(s * classes * dim, (s + 1) * classes * dim);
        const bias = heads.bias.slice(s * classes, (s + 1) * classes);
        return {
          tensors: {
            weight: { shape: [classes, dim], data: weight },
            bias: { shape: [classes], data: bias },
          },
          onnx: headToOnnx(weight, bias, classes, dim, doc),
        };
      });
    } finally {
      await generator.release();
    }
  } else {
    const generator = await CnnGenerator.create(files as CnnGeneratorFiles, selected);
    try {
      const cnns = await generator.generate(arch!, features.perClass, settings, control);
      timings = cnns.timingsMs;
      samples = cnns.networks.map((net) => ({
        tensors: net,
        onnx: cnnToOnnx(generator.layout(arch!), net, doc),
      }));
    } finally {
      await generator.release();
    }
  }
  const out = resolve(values.out);
  mkdirSync(out, { recursive: true });
  const total = features.perClass.reduce((n, m) => n + m.length / dim, 0);
  const report: GenerateReport = {
    data: folder.root,
    family,
    ...(arch !== undefined ? { arch, dark_background: features.darkImages * 2 > total } : {}),
    classes: folder.classes,
    images_per_class: features.perClass.map((m) => m.length / dim),
    unreadable: features.unreadable,
    skipped_files: folder.skipped,
    backend: describeBackend(selected),
    precision,
    generator_release: files.manifest.release_version,
    backbone: files.manifest.backbone.id,
    feature_dim: dim,
    settings,
    timings_ms: { features: Math.round(features.featureMs), ...roundAll(timings) },
    samples: [],
  };
  samples.forEach((sample, s) => {
    const name = `sample-${s}`;
    writeFileSync(
      join(out, `${name}.safetensors`),
      encodeSafetensors(sample.tensors, {
        classes: JSON.stringify(folder.classes),
        family,
        ...(arch ? { arch } : {}),
        seed: String(settings.seed),
        sample: String(s),
      }),
    );
    writeFileSync(join(out, `${name}.onnx`), sample.onnx);
    const json = Object.fromEntries(
      Object.entries(sample.tensors).map(([k, t]) => [
        k,
        { shape: t.shape, data: Array.from(t.data) },
      ]),
    );
    writeFileSync(
      join(out, `${name}.json`),
      `${JSON.stringify({ classes: folder.classes, ...json })}\n`,
    );
    report.samples.push(name);
  });
  writeFileSync(join(out, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(join(out, 'MODEL_CARD.md'), modelCard(report, 0));
  const what = family === 'head' ? 'heads' : `${arch} CNNs`;
  progress(
    `wrote ${samples.length} ${what} for ${classes} classes to ${out} (${report.backend}; features ${report.timings_ms.features} ms, generation ${report.timings_ms.encode + report.timings_ms.denoise + report.timings_ms.decode} ms)`,
  );
}

function roundAll<T extends Record<string, number>>(values: T): T {
  return Object.fromEntries(Object.entries(values).map(([k, v]) => [k, Math.round(v)])) as T;
}

function mean(values: number[]): number {
  return values.reduce((a, b) => a + b, 0) / values.length;
}

function std(values: number[]): number {
  const m = mean(values);
  return Math.sqrt(mean(values.map((v) => (v - m) ** 2)));
}

/** C for logistic regression by stratified 3-fold cross-validation on the support (1000 when a class has < 3 images). */
function chooseC(support: LabelledFeatures, classes: number): number {
  const grid = [10, 100, 1000];
  const perClass = Array.from({ length: classes }, (_, c) =>
    Array.from(support.labels.keys()).filter((i) => support.labels[i] === c),
  );
  const folds = Math.min(3, ...perClass.map((p) => p.length));
  if (folds < 2) return 1000;
  const scores = grid.map(() => 0);
  for (let f = 0; f < folds; f++) {
    const val = perClass.flatMap((p) => p.filter((_, i) => i % folds === f));
    const train = perClass.flatMap((p) => p.filter((_, i) => i % folds !== f));
    const pick = (idx: number[]): LabelledFeatures => ({
      dim: support.dim,
      features: Float32Array.from(
        idx.flatMap((i) =>
          Array.from(support.features.subarray(i * support.dim, (i + 1) * support.dim)),
        ),
      ),
      labels: Int32Array.from(idx.map((i) => support.labels[i]!)),
    });
    grid.forEach(
      (c, g) => (scores[g]! += accuracy(logisticRegression(pick(train), classes, c), pick(val))),
    );
  }
  return grid[scores.indexOf(Math.max(...scores))]!;
}

/** What generate wrote about a weights folder (older folders without report.json hold heads). */
function weightsReport(dir: string): { family: 'head' | 'cnn'; arch?: string } {
  try {
    const report = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')) as {
      family?: string;
      arch?: string;
    };
    if (report.family === 'cnn' && typeof report.arch === 'string')
      return { family: 'cnn', arch: report.arch };
  } catch {
    // no report: heads from an earlier version
  }
  return { family: 'head' };
}

function argmaxAccuracy(logits: Float32Array, labels: Int32Array, classes: number): number {
  let hits = 0;
  labels.forEach((label, i) => {
    let best = 0;
    for (let c = 1; c < classes; c++)
      if (logits[i * classes + c]! > logits[i * classes + best]!) best = c;
    if (best === label) hits++;
  });
  return hits / labels.length;
}

/** PyTorch's default initialisation, U(±1/√fan_in) for weights and biases, from a seeded stream. */
function randomCnn(layout: CnnArchLayout, classes: number, rng: Mulberry32): CnnWeights {
  const out: CnnWeights = {};
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

async function evaluate(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      support: { type: 'string' },
      query: { type: 'string' },
      weights: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  if (!values.support || !values.query || !values.weights)
    throw new UsageError('evaluate needs --support <folder>, --query <folder> and --weights <dir>');
  const weightsDir = resolve(values.weights);
  const sampleFiles = readdirSync(weightsDir)
    .filter((f) => /^sample-\d+\.safetensors$/.test(f))
    .sort((a, b) => Number(a.match(/\d+/)![0]) - Number(b.match(/\d+/)![0]));
  if (sampleFiles.length === 0)
    throw new UsageError(`${weightsDir} has no sample-<k>.safetensors; run generate first`);
  const { family, arch } = weightsReport(weightsDir);
  const support = await folderFeatures(resolve(values.support), { keepImages: family === 'cnn' });
  const query = await folderFeatures(resolve(values.query), { keepImages: family === 'cnn' });
  const classes = support.folder.classes;
  if (JSON.stringify(query.folder.classes) !== JSON.stringify(classes))
    throw new UsageError(
      `the query classes (${query.folder.classes.join(', ')}) differ from the support classes (${classes.join(', ')})`,
    );
  const q = labelled(query);
  const s = labelled(support);
  const weights = sampleFiles.map((file) => {
    const { tensors, metadata } = decodeSafetensors(
      new Uint8Array(readFileSync(join(weightsDir, file))),
    );
    if (metadata.classes !== undefined && metadata.classes !== JSON.stringify(classes))
      throw new UsageError(
        `${file} was generated for classes ${metadata.classes}, not ${JSON.stringify(classes)}`,
      );
    return { file, tensors };
  });
  let generated: number[];
  let random: number[];
  let darkBackground: boolean | undefined;
  // cnn family: each network's body with a nearest-class-mean last layer on its own penultimate features.
  const prototypes = {
    generated: [] as number[],
    random: [] as number[],
    pretrained: { task: '', accuracy: NaN },
  };
  if (family === 'head') {
    generated = weights.map(({ tensors }) =>
      accuracy(
        {
          classes: classes.length,
          dim: q.dim,
          weight: tensors.weight!.data,
          bias: tensors.bias!.data,
        },
        q,
      ),
    );
    const rng = new Mulberry32(0);
    random = Array.from({ length: 10 }, () =>
      accuracy(
        randomHead(classes.length, q.dim, () => rng.normal()),
        q,
      ),
    );
  } else {
    const cnnSource = directorySource(join(releaseDir, 'cnn'));
    const manifest = (await loadCnnGeneratorFiles(cnnSource)).manifest;
    const layout = manifest.layout.archs[arch!];
    if (layout === undefined)
      throw new UsageError(`this release has no CNN architecture "${arch}"`);
    // One polarity for all the images, decided by majority as the factory does per dataset.
    const queryImages = query.decoded!.flat();
    const supportImages = support.decoded!.flat();
    darkBackground =
      (support.darkImages + query.darkImages) * 2 > queryImages.length + supportImages.length;
    const gray = (images: RgbaImage[]) => {
      const pixels = new Float32Array(images.length * 28 * 28);
      images.forEach((image, i) => pixels.set(toGray28(image, darkBackground), i * 28 * 28));
      return pixels;
    };
    const queryPixels = gray(queryImages);
    const supportPixels = gray(supportImages);
    const supportLabels = Int32Array.from(
      support.decoded!.flatMap((images, c) => images.map(() => c)),
    );
    /** The network's body with its last layer replaced by class-mean prototypes of its penultimate features. */
    const prototypeAccuracy = async (net: CnnWeights): Promise<number> => {
      const graph = cnnToOnnx(layout, net, '', { penultimate: true });
      const dim = layout.head_in_features;
      const features = async (pixels: Float32Array, n: number) =>
        unitNormalise(await cnnLogits(graph, pixels, n, 'features'), dim);
      const train: LabelledFeatures = {
        dim,
        features: await features(supportPixels, supportImages.length),
        labels: supportLabels,
      };
      const qf: LabelledFeatures = {
        dim,
        features: await features(queryPixels, queryImages.length),
        labels: q.labels,
      };
      return accuracy(nearestClassMeanHead(train, classes.length), qf);
    };
    const zeroShot = async (graph: Uint8Array) =>
      argmaxAccuracy(
        await cnnLogits(graph, queryPixels, queryImages.length),
        q.labels,
        classes.length,
      );
    generated = [];
    for (const { file, tensors } of weights) {
      const onnx = readFileSync(join(weightsDir, file.replace(/\.safetensors$/, '.onnx')));
      generated.push(await zeroShot(new Uint8Array(onnx)));
      prototypes.generated.push(await prototypeAccuracy(tensors as CnnWeights));
    }
    const rng = new Mulberry32(0);
    random = [];
    for (let r = 0; r < 10; r++) {
      const net = randomCnn(layout, classes.length, rng);
      random.push(await zeroShot(cnnToOnnx(layout, net)));
      prototypes.random.push(await prototypeAccuracy(net));
    }
    // "Pretrained": the zoo checkpoint of the seen task whose mean feature is nearest the support's.
    const entry = manifest.zoo_reference;
    const reference = decodeSafetensors(await readVerified(cnnSource, entry.file, entry));
    const taskIds = JSON.parse(reference.metadata.tasks ?? '[]') as string[];
    const dim = support.dim;
    const supportMean = new Float32Array(dim);
    for (let i = 0; i < s.labels.length; i++)
      for (let j = 0; j < dim; j++) supportMean[j]! += s.features[i * dim + j]!;
    const means = reference.tensors.task_mean!.data;
    const scores = taskIds.map((_, t) => {
      let score = 0;
      for (let j = 0; j < dim; j++) score += means[t * dim + j]! * supportMean[j]!;
      return score;
    });
    const nearest = scores.indexOf(Math.max(...scores));
    const pretrained: CnnWeights = {};
    for (const t of layout.tensors) {
      const all = reference.tensors[`${arch}/${t.name}`]!;
      const size = all.data.length / all.shape[0]!;
      pretrained[t.name] = {
        shape: all.shape.slice(1),
        data: all.data.slice(nearest * size, (nearest + 1) * size),
      };
    }
    prototypes.pretrained = {
      task: taskIds[nearest] ?? '',
      accuracy: await prototypeAccuracy(pretrained),
    };
  }
  progress('training the logistic-regression baseline on the support images');
  const c = chooseC(s, classes.length);
  const logistic = accuracy(logisticRegression(s, classes.length, c), q);
  const ncm = accuracy(nearestClassMeanHead(s, classes.length), q);
  const result = {
    family,
    ...(arch !== undefined ? { arch, dark_background: darkBackground } : {}),
    classes,
    support_images: support.perClass.map((m) => m.length / support.dim),
    query_images: query.perClass.map((m) => m.length / query.dim),
    generated: {
      samples: generated.length,
      accuracies: generated,
      mean: mean(generated),
      std: std(generated),
    },
    nearest_class_mean: ncm,
    logistic_regression: { accuracy: logistic, c },
    random_init: { networks: random.length, mean: mean(random), std: std(random) },
    ...(family === 'cnn'
      ? {
          with_prototype_last_layer: {
            generated: { mean: mean(prototypes.generated), std: std(prototypes.generated) },
            random_init: { mean: mean(prototypes.random), std: std(prototypes.random) },
            pretrained: prototypes.pretrained,
          },
        }
      : {}),
  };
  if (values.json) {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    return;
  }
  const f = (x: number) => x.toFixed(3);
  const what = family === 'head' ? 'heads' : `${arch} CNNs`;
  process.stdout.write(
    [
      `${classes.length} classes, ${q.labels.length} query images`,
      `generated (${generated.length} ${what}): ${f(result.generated.mean)} ± ${f(result.generated.std)}  [${generated.map(f).join(' ')}]`,
      `nearest class mean (backbone features):          ${f(ncm)}`,
      `logistic regression (backbone features, C=${c}):  ${f(logistic)}`,
      `random init (10 ${what}):      ${f(result.random_init.mean)} ± ${f(result.random_init.std)}`,
      ...(family === 'cnn'
        ? [
            "with the last layer replaced by class-mean prototypes of each network's penultimate features:",
            `  generated bodies: ${f(mean(prototypes.generated))} ± ${f(std(prototypes.generated))}`,
            `  pretrained (zoo checkpoint of the nearest seen task, ${prototypes.pretrained.task}): ${f(prototypes.pretrained.accuracy)}`,
            `  random bodies:    ${f(mean(prototypes.random))} ± ${f(std(prototypes.random))}`,
          ]
        : []),
      '',
    ].join('\n'),
  );
}

const USAGE = `usage:
  d2nwg generate --data <folder> --out <dir> [--family head|cnn] [--arch cnn-s|cnn-w] [--samples N]
                 [--steps K] [--eta E] [--guidance G] [--temperature T] [--seed S]
                 [--backend auto|cpu|webgpu] [--precision fp32|fp16|int8]
  d2nwg evaluate --support <folder> --query <folder> --weights <dir> [--json]
A folder holds one sub-folder of images (png, jpg, webp, bmp, gif) per class.`;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === 'generate') await generate(rest);
    else if (command === 'evaluate') await evaluate(rest);
    else if (command === undefined || command === '--help' || command === '-h') {
      process.stdout.write(`${USAGE}\n`);
      return command === undefined ? 1 : 0;
    } else throw new UsageError(`unknown command "${command}"\n${USAGE}`);
    return 0;
  } catch (error) {
    process.stderr.write(`d2nwg: ${errorMessage(error)}\n`);
    if (!(error instanceof UsageError || error instanceof FolderError) && process.env.D2NWG_DEBUG)
      process.stderr.write(`${(error as Error).stack}\n`);
    return 1;
  }
}
