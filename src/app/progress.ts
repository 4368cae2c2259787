import type { Progress } from '../worker/client';

const STAGE_LABELS = {
  loading: 'loading the graph',
  'selecting-backend': 'opening a session',
  running: 'running',
  decoding: 'decoding images',
  'loading-backbone': 'loading the backbone',
  extracting: 'extracting features',
  'loading-generator': 'loading the generator',
  encoding: 'encoding the dataset',
  denoising: 'denoising (DDIM steps)',
  'decoding-weights': 'decoding the weights',
} as const satisfies Record<Progress['stage'], string>;

export function describeProgress({ stage, done, total }: Progress): string {
  return total > 1 ? `${STAGE_LABELS[stage]} (${done}/${total})` : STAGE_LABELS[stage];
}
