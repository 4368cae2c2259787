// Backend choice for tfjs (backbone features, evaluation, fine-tuning), with
// the same contract as the ONNX runtime choice: try in order, report which ran.

import type * as tfTypes from '@tensorflow/tfjs';
import { errorMessage, type BackendAttempt } from './runtime';

export type TfBackend = 'webgpu' | 'wasm' | 'cpu';

export interface SelectedTfBackend {
  backend: TfBackend;
  skipped: BackendAttempt[];
}

/**
 * Makes the first of `candidates` that initialises the active tfjs backend and
 * proves it with a small computation. `cpu` (plain JavaScript) is slow and only
 * tried when named.
 */
export async function selectTfBackend(
  tf: typeof tfTypes,
  candidates: readonly TfBackend[],
): Promise<SelectedTfBackend> {
  const skipped: BackendAttempt[] = [];
  for (const backend of candidates) {
    try {
      if (!(await tf.setBackend(backend))) throw new Error(`tfjs could not initialise ${backend}`);
      await tf.ready();
      const check = tf.tidy(() => tf.matMul(tf.ones([2, 3]), tf.ones([3, 2])).sum());
      const value = (await check.data())[0];
      check.dispose();
      if (value !== 12) throw new Error(`${backend} computed ${value} for a sum that is 12`);
      return { backend, skipped };
    } catch (error) {
      skipped.push({ backend: backend === 'cpu' ? 'cpu' : backend, error: errorMessage(error) });
    }
  }
  throw new Error(
    `no tfjs backend works here: ${skipped.map((a) => `${a.backend}: ${a.error}`).join('; ')}`,
  );
}
