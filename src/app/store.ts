// One store in slices (zustand slices pattern): state with its actions beside it.
// Components select narrowly; the worker client is the only way out to tensors.

import { create, type StateCreator } from 'zustand';
import type { BackendRequest } from '../engine/runtime';
import type { SliceResult } from '../engine/slice';
import type { WorkerClient } from '../worker/client';
import type { GeneratorCheckResult } from '../engine/generator-check';
import { fetchSource } from '../engine/files';
import {
  describeGenerator,
  FAMILIES,
  readGeneratorManifest,
  type Family,
  type GeneratorDescription,
} from '../engine/generators';
import type { Progress } from '../engine/progress';
import type { Precision } from '../engine/sampling';
import type {
  BackendSpeeds,
  FeaturesResult,
  FineTuneResult,
  GenerateResult,
} from '../worker/protocol';
import type { PretrainedHead } from '../engine/evaluation';
import { loadDemo, readDemoIndex, reorderRows, type DemoIndex } from './demos';
import { readLatentMap, type LatentMap } from '../engine/latent-map';
import {
  checkFiles,
  datasetProblem,
  groupByClass,
  heldOutSplit,
  unpackZips,
  type PageDataset,
  type PickedFile,
} from './dataset';

export type Run<R> =
  | { status: 'idle' }
  | { status: 'running'; backend: BackendRequest; progress: Progress }
  | { status: 'done'; result: R }
  | { status: 'error'; backend: BackendRequest; message: string };

export interface SettingsSlice {
  backendRequest: BackendRequest;
  setBackendRequest(backend: BackendRequest): void;
  /** The backbone's backend when it should differ from the generator's (`?features=`), else null. */
  featureBackendRequest: BackendRequest | null;
  setFeatureBackendRequest(backend: BackendRequest | null): void;
}

export interface RuntimeSlice {
  sliceRun: Run<SliceResult>;
  runSlice(): Promise<void>;
  /** Every backend timed in this page: what auto takes, the probe, a large MatMul's GFLOP/s. */
  speedRun: Run<BackendSpeeds>;
  measureBackends(): Promise<void>;
}

export interface FeaturesSlice {
  featuresRun: Run<FeaturesResult>;
  extractFeatures(files: readonly File[]): Promise<void>;
}

export interface GenerateSettings {
  family: Family;
  arch: string;
  samples: number;
  steps: number;
  seed: number;
  precision: Precision;
}

/** What each family's release offers (its manifest's defaults), once read. */
export type ReleaseInfo = Record<Family, GeneratorDescription>;

export interface GenerateSlice {
  release:
    | { status: 'loading' }
    | { status: 'ready'; info: ReleaseInfo }
    | { status: 'error'; message: string };
  loadRelease(): Promise<void>;
  dataset: PageDataset | null;
  datasetProblem: string | null;
  /** Null until the release's defaults are read. */
  generateSettings: GenerateSettings | null;
  generateRun: Run<GenerateResult>;
  checkRuns: Record<Family, Run<GeneratorCheckResult>>;
  /** Unpacks zips, groups files into classes and checks each file; the newest call wins. */
  setDataset(files: readonly PickedFile[]): Promise<void>;
  /** True while a chosen folder is being read. */
  readingDataset: boolean;
  /** A folder of held-out images of the same classes, when chosen. */
  queryDataset: PageDataset | null;
  setQueryDataset(files: readonly PickedFile[]): Promise<void>;
  /** The held-out files of the last run, by the name the worker was sent (for thumbnails). */
  heldOutFiles: ReadonlyMap<string, File>;
  /** Without a held-out folder: keep every third image of each class out of the support. */
  holdOut: boolean;
  setHoldOut(holdOut: boolean): void;
  setGenerateSettings(settings: Partial<GenerateSettings>): void;
  generate(): Promise<void>;
  cancelGenerate(): void;
  /** Fine-tuning the last run's starts in the page (heads with held-out images). */
  fineTuneRun: Run<FineTuneResult>;
  /** Held-out accuracy per start, epoch by epoch, as the worker measures it. */
  fineTuneCurves: Record<string, number[]>;
  fineTune(): Promise<void>;
  /** The demo datasets shipped with the app (public/demo/index.json), once read. */
  demos:
    | { status: 'loading' }
    | { status: 'ready'; index: DemoIndex }
    | { status: 'error'; message: string };
  loadDemos(): Promise<void>;
  /** The demo chosen last, while its images are the dataset; null for the visitor's own. */
  activeDemo: { id: string; title: string; pretrained: PretrainedHead } | null;
  /** Loads a demo's support and held-out images and its pretrained head, then generates. */
  chooseDemo(id: string): Promise<void>;
  /** The head release's latent map (the generator's training latents and their PCA), read when first shown. */
  latentMap:
    | { status: 'idle' | 'loading' | 'absent' }
    | { status: 'ready'; map: LatentMap }
    | { status: 'error'; message: string };
  loadLatentMap(): Promise<void>;
  /** The backbone with this head as one tfjs graph model, zipped (built in the worker). */
  exportClassifier(head: {
    format: 'tfjs' | 'onnx';
    weight: Float32Array;
    bias: Float32Array;
    classes: string[];
    about: string;
  }): Promise<Uint8Array>;
  checkGenerator(family: Family): Promise<void>;
}

export type AppState = SettingsSlice & RuntimeSlice & FeaturesSlice & GenerateSlice;

export interface AppDependencies {
  client: () => WorkerClient;
  /** URL of the committed release folder, with a trailing slash. */
  releaseUrl: string;
  /** URL of the demo datasets (public/demo/), with a trailing slash. */
  demoUrl: string;
}

type Slice<T> = StateCreator<AppState, [], [], T>;

const createSettingsSlice: Slice<SettingsSlice> = (set) => ({
  backendRequest: 'auto',
  setBackendRequest: (backendRequest) => set({ backendRequest }),
  featureBackendRequest: null,
  setFeatureBackendRequest: (featureBackendRequest) => set({ featureBackendRequest }),
});

const createRuntimeSlice =
  (deps: AppDependencies): Slice<RuntimeSlice> =>
  (set, get) => ({
    sliceRun: { status: 'idle' },
    runSlice: async () => {
      const backend = get().backendRequest;
      const running = (progress: Progress) =>
        set({ sliceRun: { status: 'running', backend, progress } });
      running({ stage: 'load-release', done: 0, total: 1 });
      try {
        const result = await deps
          .client()
          .request({ type: 'run-slice', backend, releaseUrl: `${deps.releaseUrl}slice/` }, running);
        set({ sliceRun: { status: 'done', result } });
      } catch (error) {
        set({ sliceRun: { status: 'error', backend, message: (error as Error).message } });
      }
    },
    speedRun: { status: 'idle' },
    measureBackends: async () => {
      const progress: Progress = { stage: 'select-backend', done: 0, total: 1 };
      set({ speedRun: { status: 'running', backend: 'auto', progress } });
      try {
        const result = await deps.client().request({ type: 'measure-backends' });
        set({ speedRun: { status: 'done', result } });
      } catch (error) {
        set({ speedRun: { status: 'error', backend: 'auto', message: (error as Error).message } });
      }
    },
  });

const createFeaturesSlice =
  (deps: AppDependencies): Slice<FeaturesSlice> =>
  (set, get) => ({
    featuresRun: { status: 'idle' },
    extractFeatures: async (files) => {
      const backend = get().backendRequest;
      const running = (progress: Progress) =>
        set({ featuresRun: { status: 'running', backend, progress } });
      running({ stage: 'read-images', done: 0, total: files.length });
      try {
        const images = await Promise.all(
          files.map(async (file) => ({ name: file.name, bytes: await file.arrayBuffer() })),
        );
        const result = await deps.client().request(
          {
            type: 'extract-features',
            backend,
            backboneUrl: `${deps.releaseUrl}backbone/`,
            images,
          },
          running,
          images.map((image) => image.bytes),
        );
        set({ featuresRun: { status: 'done', result } });
      } catch (error) {
        set({ featuresRun: { status: 'error', backend, message: (error as Error).message } });
      }
    },
  });

const createGenerateSlice =
  (deps: AppDependencies): Slice<GenerateSlice> =>
  (set, get) => {
    let controller: AbortController | null = null;
    let datasetReads = 0; // the newest folder read wins over an older one still being checked
    /** The chosen family's class limit, from its manifest (null until read). */
    const maxClasses = () => {
      const release = get().release;
      const family = get().generateSettings?.family ?? 'head';
      return release.status === 'ready' ? release.info[family].maxClasses : null;
    };
    return {
      release: { status: 'loading' },
      loadRelease: async () => {
        try {
          const entries = await Promise.all(
            FAMILIES.map(async (family) => {
              const source = fetchSource(`${deps.releaseUrl}${family}/`);
              return [
                family,
                describeGenerator(await readGeneratorManifest(family, source)),
              ] as const;
            }),
          );
          const info = Object.fromEntries(entries) as ReleaseInfo;
          const family = get().generateSettings?.family ?? 'head';
          const d = info[family];
          set({
            release: { status: 'ready', info },
            generateSettings: {
              family,
              arch: info.cnn.defaultArch,
              samples: d.sampling.samples,
              steps: d.sampling.steps,
              seed: d.sampling.seed,
              // int8 weights: a quarter of the download, no measurable accuracy change (quantization.json)
              precision: d.precisions.includes('int8') ? 'int8' : 'fp32',
            },
          });
          const dataset = get().dataset;
          if (dataset !== null)
            set({ datasetProblem: datasetProblem(dataset, maxClasses(), get().queryDataset) });
        } catch (error) {
          set({ release: { status: 'error', message: (error as Error).message } });
        }
      },
      dataset: null,
      datasetProblem: null,
      generateSettings: null,
      generateRun: { status: 'idle' },
      fineTuneRun: { status: 'idle' },
      fineTuneCurves: {},
      demos: { status: 'loading' },
      loadDemos: async () => {
        try {
          set({
            demos: { status: 'ready', index: await readDemoIndex(fetchSource(deps.demoUrl)) },
          });
        } catch (error) {
          set({ demos: { status: 'error', message: (error as Error).message } });
        }
      },
      activeDemo: null,
      latentMap: { status: 'idle' },
      loadLatentMap: async () => {
        if (get().latentMap.status !== 'idle') return;
        set({ latentMap: { status: 'loading' } });
        try {
          const source = fetchSource(`${deps.releaseUrl}head/`);
          const manifest = await readGeneratorManifest('head', source);
          if (manifest.family !== 'head' || manifest.latent_map === null) {
            set({ latentMap: { status: 'absent' } });
            return;
          }
          set({
            latentMap: { status: 'ready', map: await readLatentMap(source, manifest.latent_map) },
          });
        } catch (error) {
          set({ latentMap: { status: 'error', message: (error as Error).message } });
        }
      },
      exportClassifier: async ({ format, weight, bias, classes, about }) =>
        (
          await deps.client().request({
            type: 'export-classifier',
            format,
            releaseUrl: deps.releaseUrl,
            weight,
            bias,
            classes,
            about,
          })
        ).zip,
      chooseDemo: async (id) => {
        const demos = get().demos;
        const demo =
          demos.status === 'ready' ? demos.index.demos.find((d) => d.id === id) : undefined;
        if (demo === undefined) return;
        set({ readingDataset: true, generateRun: { status: 'idle' }, activeDemo: null });
        try {
          const loaded = await loadDemo(fetchSource(deps.demoUrl), demo);
          await get().setQueryDataset(loaded.query);
          await get().setDataset(loaded.support);
          set({
            holdOut: false,
            activeDemo: { id, title: demo.title, pretrained: loaded.pretrained },
            generateSettings:
              get().generateSettings === null
                ? null
                : { ...get().generateSettings!, family: 'head' },
          });
        } catch (error) {
          set({
            dataset: null,
            datasetProblem: `the demo could not be loaded: ${(error as Error).message}`,
          });
          return;
        } finally {
          set({ readingDataset: false });
        }
        await get().generate();
      },
      checkRuns: { head: { status: 'idle' }, cnn: { status: 'idle' } },
      readingDataset: false,
      queryDataset: null,
      heldOutFiles: new Map(),
      holdOut: true,
      setHoldOut: (holdOut) => set({ holdOut }),
      setQueryDataset: async (files) => {
        const query = await checkFiles(groupByClass(await unpackZips(files)));
        set({ queryDataset: query.classes.length > 0 ? query : null });
        const dataset = get().dataset;
        if (dataset !== null) set({ datasetProblem: datasetProblem(dataset, maxClasses(), query) });
      },
      setDataset: async (files) => {
        const reading = ++datasetReads;
        // The visitor's own folder replaces a demo, and the demo's held-out images with it.
        const wasDemo = get().activeDemo !== null;
        set({
          readingDataset: true,
          generateRun: { status: 'idle' },
          activeDemo: null,
          ...(wasDemo ? { queryDataset: null, holdOut: true } : {}),
        });
        try {
          const dataset = await checkFiles(groupByClass(await unpackZips(files)));
          if (reading !== datasetReads) return;
          set({
            dataset,
            datasetProblem: datasetProblem(dataset, maxClasses(), get().queryDataset),
          });
        } catch (error) {
          if (reading !== datasetReads) return;
          set({ dataset: null, datasetProblem: (error as Error).message });
        } finally {
          if (reading === datasetReads) set({ readingDataset: false });
        }
      },
      setGenerateSettings: (settings) => {
        const current = get().generateSettings;
        if (current === null) return;
        set({ generateSettings: { ...current, ...settings } });
        const dataset = get().dataset;
        if (dataset !== null)
          set({ datasetProblem: datasetProblem(dataset, maxClasses(), get().queryDataset) });
      },
      generate: async () => {
        const { dataset, generateSettings: g, backendRequest: backend } = get();
        const featureBackend = get().featureBackendRequest ?? backend;
        if (
          dataset === null ||
          g === null ||
          datasetProblem(dataset, maxClasses(), get().queryDataset) !== null
        )
          return;
        controller?.abort();
        controller = new AbortController();
        set({ fineTuneRun: { status: 'idle' }, fineTuneCurves: {} });
        const running = (progress: Progress) =>
          set({ generateRun: { status: 'running', backend, progress } });
        running({ stage: 'read-images', done: 0, total: 1 });
        try {
          const split = heldOutSplit(dataset, get().queryDataset, get().holdOut);
          const read = (classes: PageDataset['classes']) =>
            Promise.all(
              classes.map(async (c) => ({
                name: c.name,
                images: await Promise.all(
                  c.files.map(async (f) => ({
                    name: `${c.name}/${f.name}`,
                    bytes: await f.arrayBuffer(),
                  })),
                ),
              })),
            );
          set({
            heldOutFiles: new Map(
              (split.query ?? []).flatMap((c) => c.files.map((f) => [`${c.name}/${f.name}`, f])),
            ),
          });
          const classes = await read(split.support);
          const query = split.query === null ? undefined : await read(split.query);
          const demo = get().activeDemo;
          const pretrained =
            demo !== null && query !== undefined && g.family === 'head'
              ? reorderRows(
                  demo.pretrained,
                  classes.map((c) => c.name),
                )
              : undefined;
          const result = await deps.client().request(
            {
              type: 'generate',
              backend,
              featureBackend,
              family: g.family,
              ...(g.family === 'cnn' ? { arch: g.arch } : {}),
              releaseUrl: deps.releaseUrl,
              classes,
              ...(query !== undefined ? { query } : {}),
              options: { samples: g.samples, steps: g.steps, seed: g.seed },
              precision: g.precision,
              ...(pretrained !== undefined ? { pretrained } : {}),
            },
            running,
            [...classes, ...(query ?? [])].flatMap((c) => c.images.map((i) => i.bytes)),
            controller.signal,
          );
          set({ generateRun: { status: 'done', result } });
        } catch (error) {
          set({ generateRun: { status: 'error', backend, message: (error as Error).message } });
        }
      },
      cancelGenerate: () => controller?.abort(),
      fineTune: async () => {
        const backend = get().featureBackendRequest ?? get().backendRequest;
        controller?.abort();
        controller = new AbortController();
        set({ fineTuneCurves: {} });
        const running = (progress: Progress) => {
          const point = progress.measured;
          if (point !== undefined) {
            const curves = get().fineTuneCurves;
            const curve = [...(curves[point.series] ?? [])];
            curve[point.epoch] = point.accuracy;
            set({ fineTuneCurves: { ...curves, [point.series]: curve } });
          }
          set({ fineTuneRun: { status: 'running', backend, progress } });
        };
        running({ stage: 'fine-tune', done: 0, total: 1 });
        try {
          const result = await deps
            .client()
            .request({ type: 'fine-tune', backend }, running, [], controller.signal);
          set({ fineTuneRun: { status: 'done', result } });
        } catch (error) {
          set({ fineTuneRun: { status: 'error', backend, message: (error as Error).message } });
        }
      },
      checkGenerator: async (family) => {
        const backend = get().backendRequest;
        const update = (run: Run<GeneratorCheckResult>) =>
          set({ checkRuns: { ...get().checkRuns, [family]: run } });
        update({
          status: 'running',
          backend,
          progress: { stage: 'load-generator', done: 0, total: 1 },
        });
        try {
          const result = await deps.client().request(
            {
              type: 'check-generator',
              backend,
              family,
              releaseUrl: deps.releaseUrl,
            },
            (progress) => update({ status: 'running', backend, progress }),
          );
          update({ status: 'done', result });
        } catch (error) {
          update({ status: 'error', backend, message: (error as Error).message });
        }
      },
    };
  };

export function createAppStore(deps: AppDependencies) {
  return create<AppState>()((...a) => ({
    ...createSettingsSlice(...a),
    ...createRuntimeSlice(deps)(...a),
    ...createFeaturesSlice(deps)(...a),
    ...createGenerateSlice(deps)(...a),
  }));
}
