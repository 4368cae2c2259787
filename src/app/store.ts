// One store in slices (zustand slices pattern): state with its actions beside it.
// Components select narrowly; the worker client is the only way out to tensors.

import { create, type StateCreator } from 'zustand';
import type { BackendRequest } from '../engine/runtime';
import type { SliceResult } from '../engine/slice';
import type { SliceStage } from '../worker/protocol';
import type { WorkerClient } from '../worker/client';

export type SliceRun =
  | { status: 'idle' }
  | { status: 'running'; backend: BackendRequest; stage: SliceStage }
  | { status: 'done'; result: SliceResult }
  | { status: 'error'; backend: BackendRequest; message: string };

export interface RuntimeSlice {
  backendRequest: BackendRequest;
  sliceRun: SliceRun;
  setBackendRequest(backend: BackendRequest): void;
  runSlice(): Promise<void>;
}

export interface AppDependencies {
  client: () => WorkerClient;
  releaseUrl: string;
}

export type AppState = RuntimeSlice;

const createRuntimeSlice =
  (deps: AppDependencies): StateCreator<AppState, [], [], RuntimeSlice> =>
  (set, get) => ({
    backendRequest: 'auto',
    sliceRun: { status: 'idle' },
    setBackendRequest: (backendRequest) => set({ backendRequest }),
    runSlice: async () => {
      const backend = get().backendRequest;
      set({ sliceRun: { status: 'running', backend, stage: 'loading' } });
      try {
        const result = await deps
          .client()
          .runSlice(backend, `${deps.releaseUrl}slice/`, (stage) =>
            set({ sliceRun: { status: 'running', backend, stage } }),
          );
        set({ sliceRun: { status: 'done', result } });
      } catch (error) {
        set({ sliceRun: { status: 'error', backend, message: (error as Error).message } });
      }
    },
  });

export function createAppStore(deps: AppDependencies) {
  return create<AppState>()((...a) => ({ ...createRuntimeSlice(deps)(...a) }));
}
