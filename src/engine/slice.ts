// The runtime slice: the factory's tiny seeded MLP, run on a chosen backend and
// compared with the output PyTorch recorded for the same input.

import { maxAbsDifference } from './compare';
import { readJson, readVerified, type FileSource } from './files';
import { array, integer, number, object, parse, string } from './schema';
import {
  selectBackend,
  type Backend,
  type BackendAttempt,
  type BackendRequest,
  type RuntimeHost,
} from './runtime';

const tensorRecord = object({ shape: array(integer), data: array(number) });

export const sliceManifestSchema = object({
  name: string,
  graph: object({
    file: string,
    sha256: string,
    bytes: integer,
    opset: integer,
    input_name: string,
    output_name: string,
  }),
  trace_file: string,
  max_abs_error: number,
  config: object({
    seed: integer,
    in_features: integer,
    hidden: integer,
    out_features: integer,
    batch: integer,
    opset: integer,
  }),
  rebuild_command: string,
  torch_version: string,
});
export type SliceManifest = ReturnType<typeof sliceManifestSchema>;

export const sliceTraceSchema = object({ input: tensorRecord, output: tensorRecord });
export type SliceTrace = ReturnType<typeof sliceTraceSchema>;

export interface SliceFiles {
  manifest: SliceManifest;
  graph: Uint8Array;
  trace: SliceTrace;
}

export interface SliceResult {
  backend: Backend;
  skipped: readonly BackendAttempt[];
  shape: number[];
  output: number[];
  expected: number[];
  maxAbsError: number;
  tolerance: number;
  passed: boolean;
  sessionMs: number;
  runMs: number;
}

export async function loadSlice(source: FileSource): Promise<SliceFiles> {
  const manifest = parse(
    sliceManifestSchema,
    await readJson(source, 'manifest.json'),
    'manifest.json',
  );
  const graph = await readVerified(source, manifest.graph.file, manifest.graph);
  const trace = parse(
    sliceTraceSchema,
    await readJson(source, manifest.trace_file),
    manifest.trace_file,
  );
  return { manifest, graph, trace };
}

export async function runSlice(
  files: SliceFiles,
  request: BackendRequest,
  host: RuntimeHost,
): Promise<SliceResult> {
  const { manifest, graph, trace } = files;
  const started = performance.now();
  const { selected, probeSession: session } = await selectBackend(request, host, graph);
  const sessionMs = performance.now() - started;
  try {
    const input = new host.ort.Tensor(
      'float32',
      Float32Array.from(trace.input.data),
      trace.input.shape,
    );
    const runStarted = performance.now();
    const outputs = await session.run({ [manifest.graph.input_name]: input });
    const runMs = performance.now() - runStarted;
    const outputTensor = outputs[manifest.graph.output_name];
    if (outputTensor === undefined) {
      throw new Error(`the slice graph has no output named ${manifest.graph.output_name}`);
    }
    const output = Array.from(outputTensor.data as Float32Array);
    const maxAbsError = maxAbsDifference(output, trace.output.data);
    return {
      backend: selected.backend,
      skipped: selected.skipped,
      shape: [...outputTensor.dims],
      output,
      expected: trace.output.data,
      maxAbsError,
      tolerance: manifest.max_abs_error,
      passed: maxAbsError <= manifest.max_abs_error,
      sessionMs,
      runMs,
    };
  } finally {
    await session.release();
  }
}
