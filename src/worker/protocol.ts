// The typed protocol between the page and its worker. The page sends requests;
// the worker answers each with progress events and exactly one result or error.

import type { BackendSpeed, ProbeVerdict } from '../engine/backend-probe';
import type { GeneratorCheckResult } from '../engine/generator-check';
import type { Evaluation, PretrainedHead } from '../engine/evaluation';
import type { FineTuneCurve } from '../engine/fine-tune';
import type { GenerationResult } from '../engine/pipeline';
import type { Progress, ProgressStage } from '../engine/progress';
import type { BackendAttempt, BackendRequest } from '../engine/runtime';
import type { Family, Precision, SamplingOptions } from '../engine/sampling';
import type { SliceResult } from '../engine/slice';
import type { TfBackend } from '../engine/tf-backend';

/** An image file as the page read it; its bytes are transferred to the worker. */
export interface ImageFile {
  name: string;
  bytes: ArrayBuffer;
}

export type WorkerRequest =
  | { type: 'run-slice'; requestId: number; backend: BackendRequest; releaseUrl: string }
  /** Times every backend here: the probe `auto` uses, and a large MatMul's GFLOP/s. */
  | { type: 'measure-backends'; requestId: number }
  | {
      type: 'extract-features';
      requestId: number;
      backend: BackendRequest;
      /** URL of the backbone's release folder (backbone.json, model.json, weights.bin). */
      backboneUrl: string;
      images: ImageFile[];
    }
  | {
      type: 'check-generator';
      requestId: number;
      backend: BackendRequest;
      family: Family;
      /** URL of the release folder (its family folders hold manifest.json, graphs, trace.json). */
      releaseUrl: string;
    }
  | {
      type: 'generate';
      requestId: number;
      /** The generator's backend, and the backbone's (tfjs). */
      backend: BackendRequest;
      featureBackend: BackendRequest;
      family: Family;
      /** For the cnn family: cnn-s or cnn-w; the manifest's default when absent. */
      arch?: string;
      /** URL of the release folder (backbone/, head/, cnn/). */
      releaseUrl: string;
      /** Classes in output order, each with its images. */
      classes: { name: string; images: ImageFile[] }[];
      /** Held-out images of the same classes, in the same order: the result then carries accuracies. */
      query?: { name: string; images: ImageFile[] }[];
      options: Partial<SamplingOptions>;
      /** Graph precision asked for; fp32 is used when the release ships no such variant. */
      precision: Precision;
      /** head, with `query`: a pretrained head for these classes to compare and fine-tune. */
      pretrained?: PretrainedHead;
    }
  | {
      /**
       * Fine-tunes every start of the last generate request (heads, with held-out
       * images) on its support with tfjs, reporting each start's held-out accuracy per epoch.
       */
      type: 'fine-tune';
      requestId: number;
      backend: BackendRequest;
      epochs?: number;
      learningRate?: number;
    }
  | {
      /** The whole classifier (backbone + one head), zipped: a tfjs graph model folder or one ONNX graph. */
      type: 'export-classifier';
      requestId: number;
      format: 'tfjs' | 'onnx';
      releaseUrl: string;
      weight: Float32Array;
      bias: Float32Array;
      classes: string[];
      /** A sentence for the README: which weights these are. */
      about: string;
    }
  /** Stops the request `target` at its next step; it then answers with an error saying so. */
  | { type: 'cancel'; requestId: number; target: number };

export type Stage = ProgressStage;

export interface FeaturesResult {
  backend: TfBackend;
  skipped: readonly BackendAttempt[];
  backboneId: string;
  featureDim: number;
  images: { name: string; width: number; height: number; features: Float32Array }[];
  msPerImage: number;
}

export interface BackendSpeeds {
  speeds: BackendSpeed[];
  /** The probe's verdict over every backend that ran it (null when none could). */
  verdict: ProbeVerdict | null;
  /** What `auto` takes in this page, and why ("wasm (webgpu skipped: …)"). */
  auto: string;
}

export interface FineTuneResult {
  curves: FineTuneCurve[];
  epochs: number;
  learningRate: number;
  /** The tfjs backend that trained, for people. */
  backend: string;
  ms: number;
}

export type GenerateResult = GenerationResult & {
  /** Accuracy on the held-out images beside the baselines, when the request had them. */
  evaluation?: Evaluation;
};

export type WorkerEvent =
  | ({ type: 'progress'; requestId: number } & Progress)
  | { type: 'slice-result'; requestId: number; result: SliceResult }
  | { type: 'backend-speeds-result'; requestId: number; result: BackendSpeeds }
  | { type: 'features-result'; requestId: number; result: FeaturesResult }
  | { type: 'generator-check-result'; requestId: number; result: GeneratorCheckResult }
  | { type: 'generate-result'; requestId: number; result: GenerateResult }
  | { type: 'fine-tune-result'; requestId: number; result: FineTuneResult }
  | { type: 'classifier-result'; requestId: number; result: { zip: Uint8Array } }
  | { type: 'error'; requestId: number; message: string };

export type ResultEvent = Extract<
  WorkerEvent,
  {
    type:
      | 'slice-result'
      | 'backend-speeds-result'
      | 'features-result'
      | 'generator-check-result'
      | 'generate-result'
      | 'fine-tune-result'
      | 'classifier-result';
  }
>;

export function assertNever(value: never): never {
  throw new Error(`unhandled message ${JSON.stringify(value)}`);
}
