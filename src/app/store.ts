// One store in slices (zustand slices pattern): state with its actions beside it.
// Components select narrowly; the worker client is the only way out to tensors.

import { create, type StateCreator } from 'zustand';
import type { BackendRequest } from '../engine/runtime';
import type { SliceResult } from '../engine/slice';
import type { Progress, WorkerClient } from '../worker/client';
import type { FeaturesResult } from '../worker/protocol';

export type Run<R> =
  | { status: 'idle' }
  | { status: 'running'; backend: BackendRequest; progress: Progress }
  | { status: 'done'; result: R }
  | { status: 'error'; backend: BackendRequest; message: string };

export interface SettingsSlice {
  backendRequest: BackendRequest;
  setBackendRequest(backend: BackendRequest): void;
}

export interface RuntimeSlice {
  sliceRun: Run<SliceResult>;
  runSlice(): Promise<void>;
}

export interface FeaturesSlice {
  featuresRun: Run<FeaturesResult>;
  extractFeatures(files: readonly File[]): Promise<void>;
}

export type AppState = SettingsSlice & RuntimeSlice & FeaturesSlice;

export interface AppDependencies {
  client: () => WorkerClient;
  /** URL of the committed release folder, with a trailing slash. */
  releaseUrl: string;
}

type Slice<T> = StateCreator<AppState, [], [], T>;

const createSettingsSlice: Slice<SettingsSlice> = (set) => ({
  backendRequest: 'auto',
  setBackendRequest: (backendRequest) => set({ backendRequest }),
});

const createRuntimeSlice =
  (deps: AppDependencies): Slice<RuntimeSlice> =>
  (set, get) => ({
    sliceRun: { status: 'idle' },
    runSlice: async () => {
      const backend = get().backendRequest;
      const running = (progress: Progress) =>
        set({ sliceRun: { status: 'running', backend, progress } });
      running({ stage: 'loading', done: 0, total: 1 });
      try {
        const result = await deps
          .client()
          .request({ type: 'run-slice', backend, releaseUrl: `${deps.releaseUrl}slice/` }, running);
        set({ sliceRun: { status: 'done', result } });
      } catch (error) {
        set({ sliceRun: { status: 'error', backend, message: (error as Error).message } });
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
      running({ stage: 'decoding', done: 0, total: files.length });
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

export function createAppStore(deps: AppDependencies) {
  return create<AppState>()((...a) => ({
    ...createSettingsSlice(...a),
    ...createRuntimeSlice(deps)(...a),
    ...createFeaturesSlice(deps)(...a),
  }));
}
