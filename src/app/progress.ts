import type { Progress } from '../worker/client';

const STAGE_LABELS = {
  loading: 'loading the graph',
  'selecting-backend': 'opening a session',
  running: 'running',
  decoding: 'decoding images',
  'loading-backbone': 'loading the backbone',
  extracting: 'extracting features',
} as const;

export function describeProgress({ stage, done, total }: Progress): string {
  return total > 1 ? `${STAGE_LABELS[stage]} (${done}/${total})` : STAGE_LABELS[stage];
}
