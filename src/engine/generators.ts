// The generator families behind one interface, and the one place that opens
// them: read the manifest and graphs at a precision → pick the backend by
// opening the decoder on it → open the other two graphs. A registry keeps
// opened generators, so a worker or a long-lived process opens each once.

import { CnnGenerator, cnnManifestSchema, type CnnManifest } from './cnn-generator';
import { readJson, readVerified, type FileSource } from './files';
import {
  HeadGenerator,
  headManifestSchema,
  readStatistics,
  referencePrior,
  type HeadManifest,
} from './head-generator';
import type { FoldPrior } from './refine';
import { parse } from './schema';
import {
  FAMILIES,
  loadGeneratorFiles,
  PRECISIONS,
  type Family,
  type GeneratedWeights,
  type GenerateOptions,
  type NetworkWeights,
  type Precision,
  type SamplingOptions,
} from './sampling';

export {
  FAMILIES,
  type Family,
  type GeneratedWeights,
  type GenerateOptions,
  type NetworkWeights,
} from './sampling';
import {
  selectBackend,
  type BackendRequest,
  type RuntimeHost,
  type SelectedBackend,
} from './runtime';
import type { Control } from './progress';

export function parseFamily(value: string): Family {
  if ((FAMILIES as readonly string[]).includes(value)) return value as Family;
  throw new Error(`unknown family "${value}"; choose one of ${FAMILIES.join(', ')}`);
}

export function parsePrecision(value: string): Precision {
  if ((PRECISIONS as readonly string[]).includes(value)) return value as Precision;
  throw new Error(`unknown precision "${value}"; choose one of ${PRECISIONS.join(', ')}`);
}

/** What a release offers, read from its manifest alone: the defaults every front end uses. */
export interface GeneratorDescription {
  family: Family;
  releaseVersion: string;
  sampling: SamplingOptions;
  maxClasses: number;
  /** Architectures, with parameters per network (cnn: at the zoo's class count; head: per class). */
  archs: { name: string; parameters: number }[];
  defaultArch: string;
  precisions: Precision[];
  featureDim: number;
}

export type GeneratorManifest = HeadManifest | CnnManifest;

export function describeGenerator(manifest: GeneratorManifest): GeneratorDescription {
  const common = {
    releaseVersion: manifest.release_version,
    sampling: manifest.sampling_defaults,
    maxClasses: manifest.max_classes,
    precisions: ['fp32', ...Object.keys(manifest.variants)] as Precision[],
    featureDim: manifest.backbone.feature_dim,
  };
  if (manifest.family === 'head') {
    const arch = manifest.layout.architecture;
    const parameters = manifest.backbone.feature_dim + 1;
    return { family: 'head', ...common, archs: [{ name: arch, parameters }], defaultArch: arch };
  }
  const archs = Object.entries(manifest.layout.archs)
    .map(([name, layout]) => ({ name, parameters: layout.parameters }))
    .sort((a, b) => a.name.localeCompare(b.name));
  return { family: 'cnn', ...common, archs, defaultArch: manifest.default_arch };
}

/** A family's manifest, parsed with its schema. */
export async function readGeneratorManifest(
  family: Family,
  source: FileSource,
): Promise<GeneratorManifest> {
  const json = await readJson(source, 'manifest.json');
  return family === 'head'
    ? parse(headManifestSchema, json, 'manifest.json')
    : parse(cnnManifestSchema, json, 'manifest.json');
}

/** An opened generator of either family. */
export interface WeightGenerator {
  readonly family: Family;
  readonly manifest: GeneratorManifest;
  readonly backend: SelectedBackend;
  /** The precision of the graphs that were opened. */
  readonly precision: Precision;
  /** The architecture `arch` names, or the release's default; an unknown name throws, listing the known ones. */
  resolveArch(arch: string | undefined): string;
  /** `samples` networks for the classes of `support` (per class [K_c × featureDim] backbone features). */
  generate(
    support: readonly Float32Array[],
    options?: GenerateOptions,
    control?: Control,
  ): Promise<GeneratedWeights>;
  /** One generated network as a whole ONNX graph (onnx-writer.ts). */
  toOnnx(network: NetworkWeights, arch: string, docString: string): Uint8Array;
  /** head: the refine's cross-validation prior for a fold (head-generator.ts, referencePrior). */
  readonly foldPrior?: FoldPrior;
  release(): Promise<void>;
}

export interface OpenOptions {
  precision?: Precision;
  backend?: BackendRequest;
  /** A precision the release does not ship falls back to fp32 (the result's `precision` says so). */
  orFp32?: boolean;
}

/** Reads, verifies and opens a family's generator on the backend `backend` asks for. */
export async function openGenerator(
  family: Family,
  source: FileSource,
  host: RuntimeHost,
  { precision = 'fp32', backend = 'auto', orFp32 = false }: OpenOptions = {},
): Promise<WeightGenerator> {
  const schema = family === 'head' ? headManifestSchema : cnnManifestSchema;
  let files = await loadGeneratorFiles<GeneratorManifest>(source, schema, precision, { orFp32 });
  if (files.manifest.family !== family)
    throw new Error(
      `the release at this address is the ${files.manifest.family} family, not ${family}`,
    );
  // The backend is proven by opening the decoder on it; that session is kept.
  let { selected, probeSession } = await selectBackend(backend, host, files.decoder);
  if (selected.backend === 'webgpu' && files.precision === 'int8' && orFp32) {
    // The int8 graphs' dynamic quantisation gives wrong numbers on onnxruntime-web's WebGPU
    // provider (measured on Chromium's adapter: heads 100× too large); fp32 runs there instead,
    // and the result's `precision` says so.
    await probeSession.release();
    files = await loadGeneratorFiles<GeneratorManifest>(source, schema, 'fp32');
    ({ selected, probeSession } = await selectBackend('webgpu', host, files.decoder));
  }
  if (files.manifest.family === 'head') {
    const entry = files.manifest.support.statistics;
    const statistics = await readVerified(source, entry.file, entry);
    return HeadGenerator.create(
      { ...files, manifest: files.manifest },
      selected,
      probeSession,
      statistics,
    );
  }
  return CnnGenerator.create({ ...files, manifest: files.manifest }, selected, probeSession);
}

/**
 * The refine's fold prior of a head release from its manifest and statistics
 * file alone, without opening its graphs (the CLI's `evaluate`).
 */
export async function readFoldPrior(
  source: FileSource,
  manifest: HeadManifest,
): Promise<FoldPrior> {
  const entry = manifest.support.statistics;
  return referencePrior(manifest, readStatistics(await readVerified(source, entry.file, entry)));
}

/**
 * Opened generators by family, precision and backend request, each opened once.
 * A failed open is forgotten, so the next request tries again.
 */
export class GeneratorRegistry {
  private readonly opened = new Map<string, Promise<WeightGenerator>>();

  constructor(
    private readonly host: RuntimeHost,
    /** Where a family's release files come from. */
    readonly source: (family: Family) => FileSource,
  ) {}

  open(family: Family, options: OpenOptions = {}): Promise<WeightGenerator> {
    const key = JSON.stringify([
      family,
      options.precision ?? 'fp32',
      options.backend ?? 'auto',
      !!options.orFp32,
    ]);
    let generator = this.opened.get(key);
    if (generator === undefined) {
      generator = openGenerator(family, this.source(family), this.host, options);
      this.opened.set(key, generator);
      generator.catch(() => this.opened.delete(key));
    }
    return generator;
  }

  /** Releases every opened session. */
  async releaseAll(): Promise<void> {
    const all = [...this.opened.values()];
    this.opened.clear();
    await Promise.all(
      all.map((g) => g.then((generator) => generator.release()).catch(() => undefined)),
    );
  }
}
