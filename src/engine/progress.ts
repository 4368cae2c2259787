// One progress vocabulary for the engine, the worker, the page and the CLI
// (transformers.js `ProgressInfo`): every long step reports
// `{stage, done, total}` through one callback, in the order of STAGES.

/** The stages of every request, in the order a request passes them. */
export const STAGES = [
  'load-release',
  'select-backend',
  'run',
  'read-images',
  'load-backbone',
  'features',
  'load-generator',
  'encode',
  'denoise',
  'decode',
  'refine',
  'export',
  'evaluate',
  'fine-tune',
] as const;
export type ProgressStage = (typeof STAGES)[number];

export interface Progress {
  stage: ProgressStage;
  /** Units done of `total` within the stage (images, DDIM steps, samples; else 0 or 1). */
  done: number;
  total: number;
  /** The backend doing this stage's work, once it is known ("webgpu", "wasm (webgpu skipped: …)"). */
  backend?: string;
  /** fine-tune: a point of a curve measured at this step (held-out accuracy of one start). */
  measured?: { series: string; epoch: number; accuracy: number };
}

export type OnProgress = (progress: Progress) => void;

/** What a long engine call accepts besides its inputs: a way to stop it and a progress callback. */
export interface Control {
  signal?: AbortSignal;
  onProgress?: OnProgress;
}

/** `control` with every progress event it reports tagged with `backend`. */
export function onBackend(control: Control, backend: string): Control {
  const { onProgress } = control;
  return {
    ...control,
    ...(onProgress ? { onProgress: (p: Progress) => onProgress({ ...p, backend }) } : {}),
  };
}

/** What people read for each stage. */
export const STAGE_LABELS = {
  'load-release': 'loading the release files',
  'select-backend': 'opening a session',
  run: 'running',
  'read-images': 'reading images',
  'load-backbone': 'loading the backbone',
  features: 'extracting features',
  'load-generator': 'loading the generator',
  encode: 'encoding the dataset',
  denoise: 'denoising (DDIM steps)',
  decode: 'decoding the weights',
  refine: 'refining toward the images',
  export: 'writing ONNX',
  evaluate: 'measuring on the held-out images',
  'fine-tune': 'fine-tuning in the page',
} as const satisfies Record<ProgressStage, string>;

export function describeProgress({ stage, done, total }: Progress): string {
  return total > 1 ? `${STAGE_LABELS[stage]} (${done}/${total})` : STAGE_LABELS[stage];
}

/** "Working on wasm: denoising (DDIM steps) (3/50)…", naming the backend once it is known. */
export function describeWork(requested: string, progress: Progress): string {
  const who =
    progress.backend !== undefined
      ? `Working on ${progress.backend}`
      : requested === 'auto'
        ? 'Working (choosing a backend)'
        : `Working (starting ${requested})`;
  return `${who}: ${describeProgress(progress)}…`;
}

export class GenerationCancelled extends Error {
  constructor() {
    super('generation was cancelled');
    this.name = 'GenerationCancelled';
  }
}

export function throwIfCancelled(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new GenerationCancelled();
}

/**
 * Lets queued events run (a worker's "cancel" message): onnxruntime-web's wasm
 * runs can resolve without ever returning to the event loop, so a loop of
 * awaited runs would otherwise never see the message. A MessageChannel hop, not
 * setTimeout, which browsers clamp to 4 ms when nested.
 */
export function yieldToEventLoop(): Promise<void> {
  if (typeof MessageChannel === 'undefined')
    return new Promise((resolve) => setTimeout(resolve, 0));
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => {
      channel.port1.close();
      resolve();
    };
    channel.port2.postMessage(null);
  });
}

/** Runs `body` as one stage of 1 unit, reporting its start and end; returns its result and milliseconds. */
export async function timedStage<T>(
  stage: ProgressStage,
  control: Control,
  body: () => Promise<T>,
  { reportUnits = true }: { reportUnits?: boolean } = {},
): Promise<{ result: T; ms: number }> {
  throwIfCancelled(control.signal);
  const started = performance.now();
  if (reportUnits) control.onProgress?.({ stage, done: 0, total: 1 });
  const result = await body();
  if (reportUnits) control.onProgress?.({ stage, done: 1, total: 1 });
  return { result, ms: performance.now() - started };
}
