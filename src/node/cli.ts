// The command-line tool: generate classifier heads or whole small CNNs for a
// folder of images, and measure them against same-run baselines. A thin
// adapter: the pipeline (engine/pipeline.ts) generates, the evaluation module
// (engine/evaluation.ts) measures; this file reads folders and writes files.
//
//   d2nwg generate --data <folder> --out <dir> [options]   (d2nwg --help lists them, with defaults)
//   d2nwg evaluate --support <folder> --query <folder> --weights <dir> [--json]
//
// A folder is one sub-folder of images per class; classes are the sorted
// sub-folder names. Progress goes to stderr; a mistake prints one line and exits 1.

import {
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadBackbone, type Backbone } from '../engine/backbone';
import {
  darkBackground,
  evaluateWeights,
  type Evaluation,
  type Spread,
} from '../engine/evaluation';
import {
  describeGenerator,
  FAMILIES,
  GeneratorRegistry,
  parseFamily,
  parsePrecision,
  readFoldPrior,
  readGeneratorManifest,
  type Family,
  type GeneratorDescription,
} from '../engine/generators';
import { directorySource, nodeHost } from '../engine/node-host';
import {
  datasetFeatures,
  generateWeights,
  type ClassImages,
  type DatasetFeatures,
  type FeatureExtractor,
} from '../engine/pipeline';
import { STAGE_LABELS, type Progress } from '../engine/progress';
import { describeRefinement } from '../engine/refine';
import { describeBackend, errorMessage, parseBackendRequest } from '../engine/runtime';
import type { Precision, SamplingOptions } from '../engine/sampling';
import type { RgbaImage } from '../engine/preprocess';
import { decodeSafetensors, encodeSafetensors } from '../engine/safetensors';
import { readClassFolder, FolderError, type ClassFolder } from './class-folder';
import { decodeImage } from './images';
import { nodeTf } from './tf-node';

const repoRoot = resolve(import.meta.dirname, '../..');
const releaseDir = join(repoRoot, 'models/release');
const familySource = (family: Family) => directorySource(join(releaseDir, family));

class UsageError extends Error {}

function say(message: string): void {
  process.stderr.write(`${message}\n`);
}

/** Progress on stderr: a line when a stage starts and every tenth of its way. */
function progressPrinter(): (p: Progress) => void {
  let last = '';
  let lastTenth = -1;
  return ({ stage, done, total }) => {
    const tenth = total > 1 ? Math.floor((10 * done) / total) : 0;
    if (stage === last && (tenth === lastTenth || total <= 1)) return;
    last = stage;
    lastTenth = tenth;
    say(total > 1 ? `${STAGE_LABELS[stage]}: ${done}/${total}` : `${STAGE_LABELS[stage]}…`);
  };
}

/** Backbone features in Node: sharp decodes, tfjs (wasm) runs the release's backbone, loaded once. */
export function nodeExtractor(): FeatureExtractor & { dispose(): void } {
  let loaded: Promise<Backbone> | undefined;
  return {
    decode: (bytes, name) =>
      decodeImage(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes), name),
    backbone: async () => {
      const { tf, selected } = await nodeTf();
      loaded ??= loadBackbone(directorySource(join(releaseDir, 'backbone')), tf);
      return { backbone: await loaded, backendLabel: describeBackend(selected) };
    },
    dispose: () => void loaded?.then((b) => b.model.dispose()),
  };
}

export function classImages(folder: ClassFolder): ClassImages[] {
  return folder.classes.map((name, c) => ({
    name,
    images: folder.images[c]!.map((path) => ({
      name: path.slice(folder.root.length + 1),
      read: () => readFile(path),
    })),
  }));
}

/**
 * A class folder, with a hint when it looks like the parent of support/ and
 * query/ folders (class folders that hold folders instead of images).
 */
function classFolder(root: string, option: string): ClassFolder {
  try {
    return readClassFolder(root);
  } catch (error) {
    if (!(error instanceof FolderError)) throw error;
    const nested =
      existsSync(root) && statSync(root).isDirectory()
        ? readdirSync(root).filter((name) => {
            const path = join(root, name);
            return (
              statSync(path).isDirectory() &&
              readdirSync(path).some((f) => statSync(join(path, f)).isDirectory())
            );
          })
        : [];
    if (nested.length > 0)
      throw new FolderError(
        `${error.message}. ${root} looks like a parent folder (${nested.join(', ')} hold folders, not images); ` +
          `pass one of them, e.g. ${option} ${join(root, nested[0]!)}`,
      );
    throw error;
  }
}

function number(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n)) throw new UsageError(`--${name} must be a number, got "${value}"`);
  return n;
}

function usage<T>(parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    throw new UsageError(errorMessage(error));
  }
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
  const refinement = report.refinement;
  const which =
    report.family !== 'head'
      ? []
      : refinement === null
        ? [
            `These are the plain generated weights (\`--plain\`): not refined toward the images. ` +
              `\`generated-${sample}.safetensors\` is not written; evaluate scores these files as "generated".`,
            '',
          ]
        : [
            `These weights are **generated + refined**: the generated head (kept as \`generated-${sample}.safetensors\`) ` +
              `was pulled toward this folder's images by the MAP refine of src/engine/refine.ts (logistic regression whose ` +
              `prior mean is the generated head), λ = ${refinement.lambda}, ` +
              (refinement.rule === 'cross-validation'
                ? 'chosen by 3-fold cross-validation on the images.'
                : `the value calibrated on held-out zoo tasks for ${refinement.min_images} image(s) per class.`) +
              ' Pass `--plain` to deliver the generated heads without the refine.',
            '',
          ];
  return [
    `# Generated ${report.family === 'head' ? 'classifier head' : `CNN ${report.arch}`} (sample ${sample})`,
    '',
    ...which,
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
  settings: SamplingOptions;
  /** How the delivered heads (`samples`) were refined; null when they are the plain generated ones. */
  refinement: { lambda: number; rule: string; min_images: number } | null;
  timings_ms: { features: number; encode: number; denoise: number; decode: number; refine: number };
  /** The delivered networks: refined heads unless --plain (head family). */
  samples: string[];
  /** The plain generated networks (the same files as `samples` when not refined). */
  generated_samples: string[];
}

/** Files of an earlier run in `out`, which a new run replaces (evaluate would score them too). */
function earlierRunFiles(out: string): string[] {
  if (!existsSync(out)) return [];
  return readdirSync(out).filter(
    (f) =>
      /^sample-\d+\.(safetensors|onnx|json)$/.test(f) ||
      /^generated-\d+\.safetensors$/.test(f) ||
      f === 'report.json' ||
      f === 'MODEL_CARD.md',
  );
}

async function generate(args: string[]): Promise<void> {
  const { values } = usage(() =>
    parseArgs({
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
        plain: { type: 'boolean', default: false },
      },
    }),
  );
  if (!values.data || !values.out)
    throw new UsageError('generate needs --data <folder> and --out <dir>');
  if (values.plain && values.family === 'cnn')
    throw new UsageError('--plain is for the head family (cnn weights are not refined)');
  // Every setting is checked before any image is read.
  const family = usage(() => parseFamily(values.family));
  const precision = usage(() => parsePrecision(values.precision));
  const backend = usage(() => parseBackendRequest(values.backend));
  if (family === 'head' && values.arch !== undefined)
    throw new UsageError('--arch is for the cnn family');
  const options: Partial<SamplingOptions> = {};
  for (const key of ['samples', 'steps', 'eta', 'guidance', 'temperature', 'seed'] as const) {
    const n = number(values[key], key);
    if (n !== undefined) options[key] = n;
  }
  const folder = classFolder(resolve(values.data), '--data');
  const out = resolve(values.out);
  const generators = new GeneratorRegistry(nodeHost, familySource);
  const extractor = nodeExtractor();
  // The polarity of the images, for the cnn family's model card: counted as they are decoded.
  const decoded: RgbaImage[] = [];
  const counting: FeatureExtractor = {
    ...extractor,
    decode: async (bytes, name) => {
      const image = await extractor.decode(bytes, name);
      if (family === 'cnn') decoded.push(image);
      return image;
    },
  };
  let result;
  try {
    result = await generateWeights(
      {
        family,
        ...(values.arch !== undefined ? { arch: values.arch } : {}),
        precision,
        backend,
        options,
        data: { images: classImages(folder) },
        refine: !values.plain,
      },
      { generators, extractor: counting },
      { onProgress: progressPrinter() },
    );
  } finally {
    extractor.dispose();
    await generators.releaseAll();
  }
  for (const message of result.unreadable) say(`skipped: ${message}`);
  const stale = earlierRunFiles(out);
  for (const file of stale) rmSync(join(out, file));
  if (stale.length > 0) say(`removed ${stale.length} files of an earlier run from ${out}`);
  mkdirSync(out, { recursive: true });
  const manifest = await readGeneratorManifest(family, familySource(family));
  const report: GenerateReport = {
    data: folder.root,
    family,
    ...(family === 'cnn' ? { arch: result.arch, dark_background: darkBackground(decoded) } : {}),
    classes: result.classes,
    images_per_class: result.imagesPerClass,
    unreadable: result.unreadable,
    skipped_files: folder.skipped,
    backend: describeBackend(result),
    precision: result.precision,
    generator_release: result.releaseVersion,
    backbone: manifest.backbone.id,
    feature_dim: manifest.backbone.feature_dim,
    settings: result.options,
    refinement:
      result.refinement === null
        ? null
        : {
            lambda: result.refinement.lambda,
            rule: result.refinement.rule,
            min_images: result.refinement.minImages,
          },
    timings_ms: roundAll({
      features: result.timingsMs.features,
      encode: result.timingsMs.encode,
      denoise: result.timingsMs.denoise,
      decode: result.timingsMs.decode,
      refine: result.timingsMs.refine,
    }),
    samples: [],
    generated_samples: [],
  };
  result.networks.forEach((tensors, s) => {
    const name = `sample-${s}`;
    writeFileSync(
      join(out, `${name}.safetensors`),
      encodeSafetensors(tensors, {
        classes: JSON.stringify(result.classes),
        family,
        ...(family === 'cnn' ? { arch: result.arch } : {}),
        seed: String(result.options.seed),
        sample: String(s),
      }),
    );
    writeFileSync(join(out, `${name}.onnx`), result.onnx[s]!);
    const json = Object.fromEntries(
      Object.entries(tensors).map(([k, t]) => [k, { shape: t.shape, data: Array.from(t.data) }]),
    );
    writeFileSync(
      join(out, `${name}.json`),
      `${JSON.stringify({ classes: result.classes, ...json })}\n`,
    );
    report.samples.push(name);
    // The plain generated head beside the refined one: what `evaluate` scores as "generated".
    const plain = result.refinement === null ? name : `generated-${s}`;
    if (plain !== name)
      writeFileSync(
        join(out, `${plain}.safetensors`),
        encodeSafetensors(result.generated[s]!, {
          classes: JSON.stringify(result.classes),
          family,
          seed: String(result.options.seed),
          sample: String(s),
          refined: 'no',
        }),
      );
    report.generated_samples.push(plain);
  });
  writeFileSync(join(out, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(join(out, 'MODEL_CARD.md'), modelCard(report, 0));
  const what =
    family === 'head'
      ? result.refinement === null
        ? 'plain generated heads'
        : `heads, ${describeRefinement(result.refinement)},`
      : `${result.arch} CNNs`;
  const t = report.timings_ms;
  say(
    `wrote ${result.networks.length} ${what} for ${result.classes.length} classes to ${out} (${report.backend}; features ${t.features} ms, generation ${t.encode + t.denoise + t.decode} ms)`,
  );
}

function roundAll<T extends Record<string, number>>(values: T): T {
  return Object.fromEntries(Object.entries(values).map(([k, v]) => [k, Math.round(v)])) as T;
}

/** What generate wrote about a weights folder: its family, arch and sample files. */
function weightsFolder(dir: string): { family: Family; arch?: string; samples: string[] } {
  if (!existsSync(dir))
    throw new UsageError(`--weights ${dir} does not exist; run d2nwg generate --out ${dir} first`);
  if (!statSync(dir).isDirectory())
    throw new UsageError(`--weights ${dir} is a file; pass the folder that generate wrote`);
  let report: {
    family?: string;
    arch?: string;
    samples?: string[];
    generated_samples?: string[];
  } = {};
  try {
    report = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')) as typeof report;
  } catch {
    // no report: heads from an earlier version; every sample file counts
  }
  // The plain generated networks: evaluate scores them, and refines them itself.
  const samples =
    (report.generated_samples ?? report.samples)?.map((name) => `${name}.safetensors`) ??
    readdirSync(dir)
      .filter((f) => /^sample-\d+\.safetensors$/.test(f))
      .sort((a, b) => Number(a.match(/\d+/)![0]) - Number(b.match(/\d+/)![0]));
  if (samples.length === 0)
    throw new UsageError(`${dir} has no sample-<k>.safetensors; run d2nwg generate first`);
  for (const file of samples)
    if (!existsSync(join(dir, file)))
      throw new UsageError(
        `${join(dir, file)} is listed in report.json but missing; run generate again`,
      );
  const family = report.family === 'cnn' ? 'cnn' : 'head';
  return { family, ...(report.arch !== undefined ? { arch: report.arch } : {}), samples };
}

function snakeSpread(s: Spread, count: string) {
  return {
    [count]: s.count,
    ...(count === 'samples' ? { accuracies: s.values } : {}),
    mean: s.mean,
    std: s.std,
  };
}

/** The JSON report (snake_case, as the factory's metrics). */
function evaluationJson(e: Evaluation) {
  return {
    family: e.family,
    ...(e.family === 'cnn' ? { arch: e.arch, dark_background: e.darkBackground } : {}),
    classes: e.classes,
    support_images: e.supportImages,
    query_images: e.queryImages,
    generated: snakeSpread(e.generated, 'samples'),
    ...(e.generatedRefined
      ? {
          generated_refined: {
            ...snakeSpread(e.generatedRefined, 'samples'),
            lambda: e.generatedRefined.lambda,
            lambda_rule: e.generatedRefined.rule,
          },
        }
      : {}),
    nearest_class_mean: e.nearestClassMean,
    logistic_regression: e.logisticRegression,
    ...(e.trainedHead
      ? {
          trained_head: {
            accuracy: e.trainedHead.accuracy,
            epochs: e.trainedHead.epochs,
            train_ms: Math.round(e.trainedHead.trainMs),
          },
        }
      : {}),
    random_init: snakeSpread(e.randomInit, 'networks'),
    ...(e.withPrototypeLastLayer
      ? {
          with_prototype_last_layer: {
            generated: {
              mean: e.withPrototypeLastLayer.generated.mean,
              std: e.withPrototypeLastLayer.generated.std,
            },
            random_init: {
              mean: e.withPrototypeLastLayer.randomInit.mean,
              std: e.withPrototypeLastLayer.randomInit.std,
            },
            pretrained: e.withPrototypeLastLayer.pretrained,
          },
        }
      : {}),
  };
}

async function evaluate(args: string[]): Promise<void> {
  const { values } = usage(() =>
    parseArgs({
      args,
      options: {
        support: { type: 'string' },
        query: { type: 'string' },
        weights: { type: 'string' },
        json: { type: 'boolean', default: false },
      },
    }),
  );
  if (!values.support || !values.query || !values.weights)
    throw new UsageError('evaluate needs --support <folder>, --query <folder> and --weights <dir>');
  // Everything that can be checked without images first.
  const weightsDir = resolve(values.weights);
  const { family, arch, samples } = weightsFolder(weightsDir);
  const supportFolder = classFolder(resolve(values.support), '--support');
  const queryFolder = classFolder(resolve(values.query), '--query');
  const classes = supportFolder.classes;
  if (JSON.stringify(queryFolder.classes) !== JSON.stringify(classes))
    throw new UsageError(
      `the query classes (${queryFolder.classes.join(', ')}) differ from the support classes (${classes.join(', ')})`,
    );
  const networks = samples.map((file) => {
    const { tensors, metadata } = decodeSafetensors(
      new Uint8Array(readFileSync(join(weightsDir, file))),
    );
    if (metadata.classes !== undefined && metadata.classes !== JSON.stringify(classes))
      throw new UsageError(
        `${file} was generated for classes ${metadata.classes}, not ${JSON.stringify(classes)}`,
      );
    return tensors;
  });
  const extractor = nodeExtractor();
  const control = { onProgress: progressPrinter() };
  const keepImages = { keepImages: family === 'cnn' };
  let support: DatasetFeatures;
  let query: DatasetFeatures;
  try {
    support = await datasetFeatures(classImages(supportFolder), extractor, control, keepImages);
    query = await datasetFeatures(classImages(queryFolder), extractor, control, keepImages);
  } finally {
    extractor.dispose();
  }
  for (const message of [...support.unreadable, ...query.unreadable]) say(`skipped: ${message}`);
  say('measuring the generated weights and the baselines');
  const manifest = await readGeneratorManifest(family, familySource(family));
  const headManifest = manifest.family === 'head' ? manifest : undefined;
  const result = await evaluateWeights(
    family,
    networks,
    support,
    query,
    manifest.family === 'cnn'
      ? {
          host: nodeHost,
          manifest,
          source: familySource('cnn'),
          arch: arch ?? manifest.default_arch,
        }
      : undefined,
    {
      tf: (await nodeTf()).tf,
      ...(headManifest
        ? {
            refine: headManifest.refine,
            foldPrior: await readFoldPrior(familySource('head'), headManifest),
          }
        : {}),
    },
  );
  if (values.json) {
    process.stdout.write(`${JSON.stringify(evaluationJson(result), null, 2)}\n`);
    return;
  }
  process.stdout.write(evaluationText(result));
}

function evaluationText(e: Evaluation): string {
  const f = (x: number) => x.toFixed(3);
  const what = e.family === 'head' ? 'heads' : `${e.arch} CNNs`;
  const queries = e.queryImages.reduce((a, b) => a + b, 0);
  const p = e.withPrototypeLastLayer;
  return [
    `${e.classes.length} classes, ${queries} query images`,
    `generated (${e.generated.count} ${what}): ${f(e.generated.mean)} ± ${f(e.generated.std)}  [${e.generated.values.map(f).join(' ')}]`,
    ...(e.generatedRefined
      ? [
          `generated + refined (λ=${e.generatedRefined.lambda}, ${e.generatedRefined.rule}): ${f(e.generatedRefined.mean)} ± ${f(e.generatedRefined.std)}  [${e.generatedRefined.values.map(f).join(' ')}]`,
        ]
      : []),
    `nearest class mean (backbone features):          ${f(e.nearestClassMean)}`,
    `logistic regression (backbone features, C=${e.logisticRegression.c}):  ${f(e.logisticRegression.accuracy)}`,
    ...(e.trainedHead
      ? [
          `head trained here with tfjs (${e.trainedHead.epochs} Adam epochs, ${e.trainedHead.trainMs.toFixed(0)} ms): ${f(e.trainedHead.accuracy)}`,
        ]
      : []),
    `random init (${e.randomInit.count} ${what}):      ${f(e.randomInit.mean)} ± ${f(e.randomInit.std)}`,
    ...(p
      ? [
          "with the last layer replaced by class-mean prototypes of each network's penultimate features:",
          `  generated bodies: ${f(p.generated.mean)} ± ${f(p.generated.std)}`,
          `  pretrained (zoo checkpoint of the nearest seen task, ${p.pretrained.task}): ${f(p.pretrained.accuracy)}`,
          `  random bodies:    ${f(p.randomInit.mean)} ± ${f(p.randomInit.std)}`,
        ]
      : []),
    '',
  ].join('\n');
}

/** Usage, with every default read from the release's manifests. */
function usageText(): string {
  const described: Partial<Record<Family, GeneratorDescription>> = {};
  for (const family of FAMILIES) {
    try {
      const json = readFileSync(join(releaseDir, family, 'manifest.json'), 'utf8');
      described[family] = describeGenerator(JSON.parse(json) as never);
    } catch {
      // a release without this family: its line says so below
    }
  }
  const head = described.head;
  const cnn = described.cnn;
  const d = head?.sampling ?? cnn?.sampling;
  const archs = cnn ? cnn.archs.map((a) => a.name).join('|') : 'none in this release';
  return `usage:
  d2nwg generate --data <folder> --out <dir> [options]
  d2nwg evaluate --support <folder> --query <folder> --weights <dir> [--json]

generate options (defaults from the release's manifests):
  --family head|cnn        what to generate (default head)
  --arch ${archs.padEnd(17)} cnn architecture (default ${cnn?.defaultArch ?? '-'})
  --samples N              networks to generate (default ${d?.samples ?? '-'})
  --steps K                DDIM steps (default ${d?.steps ?? '-'})
  --eta E                  DDIM η (default ${d?.eta ?? '-'})
  --guidance G             classifier-free guidance (default ${d?.guidance ?? '-'})
  --temperature T          scale of the initial noise (default ${d?.temperature ?? '-'})
  --seed S                 noise seed (default ${d?.seed ?? '-'})
  --backend auto|cpu|webgpu  (default auto: cpu in Node)
  --precision fp32|fp16|int8 graph weights (default fp32; shipped: ${head?.precisions.join(', ') ?? '-'})
  --plain                  head: deliver the plain generated heads; by default each is refined
                           toward the images (generated + refined; the plain ones are kept too)
A folder holds one sub-folder of images (png, jpg, webp, bmp, gif) per class: 2 to ${head?.maxClasses ?? '-'} classes.
generate replaces the sample files of an earlier run in --out.`;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === 'generate') await generate(rest);
    else if (command === 'evaluate') await evaluate(rest);
    else if (
      command === undefined ||
      command === '--help' ||
      command === '-h' ||
      command === 'help'
    ) {
      process.stdout.write(`${usageText()}\n`);
      return command === undefined ? 1 : 0;
    } else throw new UsageError(`unknown command "${command}"\n${usageText()}`);
    return 0;
  } catch (error) {
    process.stderr.write(`d2nwg: ${errorMessage(error)}\n`);
    if (!(error instanceof UsageError || error instanceof FolderError) && process.env.D2NWG_DEBUG)
      process.stderr.write(`${(error as Error).stack}\n`);
    return 1;
  }
}
