// Timing backends against each other. Where `auto` cannot rule a backend out
// from what the browser says about it (a fallback adapter is ruled out in
// web-host.ts), it runs one small graph shaped like a denoiser step on each
// candidate, takes the faster, and remembers the verdict per adapter and app
// version, so the probe is paid once (issue 16: a software WebGPU adapter ran
// generation 50× slower than wasm). The same module measures a backend's
// throughput on a large MatMul, the yardstick of the browser benchmark.

import type { InferenceSession, Tensor } from 'onnxruntime-common';
import { model, node, tensorProto, valueInfo } from './onnx-writer';
import { Mulberry32 } from './rng';
import {
  errorMessage,
  sessionOptions,
  type AutoOrder,
  type Backend,
  type RuntimeHost,
} from './runtime';

/** What a probe found: milliseconds a run per backend (median), and the faster. */
export interface ProbeVerdict {
  winner: Backend;
  msPerRun: Partial<Record<Backend, number>>;
  /** Backends whose probe failed, and why. */
  failed: Partial<Record<Backend, string>>;
  /** Wall time of the whole probe (sessions, warm-up and timed runs), ms. */
  probeMs: number;
}

/** Where verdicts are kept between visits (IndexedDB in the page; memory in tests). */
export interface VerdictStore {
  get(key: string): Promise<ProbeVerdict | undefined>;
  set(key: string, verdict: ProbeVerdict): Promise<void>;
}

/** What `auto` needs to settle a choice by measurement (the page's: web-host.ts). */
export interface AutoProbe {
  /** The key a verdict is kept under: the adapter's description and the app's version. */
  key(): Promise<string>;
  store: VerdictStore;
  /** Milliseconds now; `performance.now` unless a test gives its own clock. */
  now?: () => number;
}

export function memoryVerdictStore(): VerdictStore & { entries: Map<string, ProbeVerdict> } {
  const entries = new Map<string, ProbeVerdict>();
  return {
    entries,
    get: (key) => Promise.resolve(entries.get(key)),
    set: (key, verdict) => {
      entries.set(key, verdict);
      return Promise.resolve();
    },
  };
}

/** A graph to time, with the input it takes. */
export interface TimedGraph {
  model: Uint8Array;
  input: { name: string; dims: number[] };
  /** Multiply-adds of one run. */
  multiplyAdds: number;
}

function seededWeight(name: string, rows: number, cols: number, rng: Mulberry32) {
  // Uniform with variance 1/rows: activations keep their scale through the layers
  // (no overflow, no denormals, either of which would time something else).
  const scale = Math.sqrt(3 / rows);
  const data = new Float32Array(rows * cols);
  for (let i = 0; i < data.length; i++) data[i] = (2 * rng.uniform() - 1) * scale;
  return tensorProto(name, [rows, cols], data);
}

/**
 * The probe: one step of a denoiser like the head release's, a residual MLP on
 * [80, 192] rows (8 samples × 10 classes) with three 192 → 384 → 192 SiLU
 * blocks; 35 M multiply-adds, the size at which per-call overhead and
 * arithmetic both count, as in generation.
 */
export function probeGraph(rows = 80, width = 192, hidden = 384, blocks = 3): TimedGraph {
  const rng = new Mulberry32(16);
  const nodes = [];
  const initializers = [];
  let current = 'x';
  for (let b = 0; b < blocks; b++) {
    initializers.push(
      seededWeight(`up${b}`, width, hidden, rng),
      seededWeight(`down${b}`, hidden, width, rng),
    );
    nodes.push(
      node('MatMul', [current, `up${b}`], [`h${b}`]),
      node('Sigmoid', [`h${b}`], [`gate${b}`]),
      node('Mul', [`h${b}`, `gate${b}`], [`silu${b}`]),
      node('MatMul', [`silu${b}`, `down${b}`], [`d${b}`]),
      node('Add', [current, `d${b}`], [b === blocks - 1 ? 'y' : `x${b + 1}`]),
    );
    current = `x${b + 1}`;
  }
  return {
    model: model(
      {
        name: 'backend_probe',
        nodes,
        initializers,
        inputs: [valueInfo('x', [rows, width])],
        outputs: [valueInfo('y', [rows, width])],
      },
      'd2nwg backend probe: a denoiser-step-shaped residual MLP',
    ),
    input: { name: 'x', dims: [rows, width] },
    multiplyAdds: blocks * 2 * rows * width * hidden,
  };
}

/** The yardstick: `layers` chained [rows, n] · [n, n] MatMuls. */
export function throughputGraph(rows = 512, n = 1024, layers = 4): TimedGraph {
  const rng = new Mulberry32(17);
  const initializers = [seededWeight('w', n, n, rng)];
  const nodes = [];
  for (let l = 0; l < layers; l++)
    nodes.push(
      node('MatMul', [l === 0 ? 'x' : `m${l}`, 'w'], [l === layers - 1 ? 'y' : `m${l + 1}`]),
    );
  return {
    model: model(
      {
        name: 'matmul_throughput',
        nodes,
        initializers,
        inputs: [valueInfo('x', [rows, n])],
        outputs: [valueInfo('y', [rows, n])],
      },
      'd2nwg MatMul throughput probe',
    ),
    input: { name: 'x', dims: [rows, n] },
    multiplyAdds: layers * rows * n * n,
  };
}

function inputTensor(host: RuntimeHost, graph: TimedGraph): Tensor {
  const count = graph.input.dims.reduce((a, b) => a * b, 1);
  const rng = new Mulberry32(18);
  const data = new Float32Array(count);
  for (let i = 0; i < count; i++) data[i] = 2 * rng.uniform() - 1;
  return new host.ort.Tensor('float32', data, graph.input.dims);
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

/**
 * Median milliseconds a run of `graph` on `backend`: one warm-up run first
 * (shader compilation, buffer allocation), excluded, then up to `runs` timed
 * ones, stopping after the first whose total passes `budgetMs` (a slow
 * backend is slow enough to tell from one run).
 */
export async function timeGraph(
  host: RuntimeHost,
  backend: Backend,
  graph: TimedGraph,
  { runs, budgetMs, now }: { runs: number; budgetMs: number; now: () => number },
): Promise<number> {
  const session: InferenceSession = await host.ort.InferenceSession.create(
    graph.model,
    sessionOptions(backend),
  );
  try {
    const feeds = { [graph.input.name]: inputTensor(host, graph) };
    await session.run(feeds);
    const times: number[] = [];
    let total = 0;
    while (times.length < runs && total <= budgetMs) {
      const started = now();
      await session.run(feeds);
      times.push(now() - started);
      total += times.at(-1)!;
    }
    return median(times);
  } finally {
    await session.release();
  }
}

/**
 * Runs the probe on each of `backends` (5 timed runs each, fewer where they
 * pass 300 ms) and names the fastest.
 */
export async function probeBackends(
  host: RuntimeHost,
  backends: readonly Backend[],
  { now = () => performance.now() }: { now?: () => number } = {},
): Promise<ProbeVerdict | null> {
  const started = now();
  const graph = probeGraph();
  const msPerRun: Partial<Record<Backend, number>> = {};
  const failed: Partial<Record<Backend, string>> = {};
  for (const backend of backends) {
    try {
      msPerRun[backend] = await timeGraph(host, backend, graph, { runs: 5, budgetMs: 300, now });
    } catch (error) {
      failed[backend] = errorMessage(error);
    }
  }
  const measured = backends.filter((b) => msPerRun[b] !== undefined);
  if (measured.length === 0) return null;
  const winner = measured.reduce((best, b) => (msPerRun[b]! < msPerRun[best]! ? b : best));
  return { winner, msPerRun, failed, probeMs: now() - started };
}

const ms = (v: number) => (v >= 10 ? v.toFixed(0) : v.toPrecision(2));

/** Why the probe put `backend` behind its winner, for people. */
export function probeReason(backend: Backend, verdict: ProbeVerdict, remembered: boolean): string {
  const failure = verdict.failed[backend];
  if (failure !== undefined) return `its probe failed (${failure})`;
  const slow = verdict.msPerRun[backend]!;
  const fast = verdict.msPerRun[verdict.winner]!;
  return (
    `measured ${(slow / fast).toFixed(1)}× slower than ${verdict.winner} on a probe ` +
    `(${ms(slow)} against ${ms(fast)} ms a run${remembered ? ', remembered from an earlier measurement in this browser' : ''})`
  );
}

/**
 * The order in which `auto` should try `viable` backends (none ruled out by
 * the host): the probe's winner first, from the kept verdict or a fresh
 * probe, then the rest by measured speed; `passedOver(b)` says why `b` is
 * not first. A host's `autoOrder` (runtime.ts) is this with its own probe.
 */
export async function probeOrder(
  host: RuntimeHost,
  viable: readonly Backend[],
  probe: AutoProbe,
): Promise<AutoOrder> {
  const unchanged: AutoOrder = {
    order: [...viable],
    passedOver: (backend) => ({ backend, error: 'not measured (every probe failed)' }),
  };
  if (viable.length < 2) return unchanged;
  const key = await probe.key();
  const kept = await probe.store.get(key).catch(() => undefined);
  const covers = (v: ProbeVerdict | undefined): v is ProbeVerdict =>
    v !== undefined &&
    viable.every((b) => v.msPerRun[b] !== undefined || v.failed[b] !== undefined);
  let verdict = covers(kept) ? kept : undefined;
  const remembered = verdict !== undefined;
  if (verdict === undefined) {
    verdict = (await probeBackends(host, viable, probe.now ? { now: probe.now } : {})) ?? undefined;
    if (verdict === undefined) return unchanged;
    await probe.store.set(key, verdict).catch(() => undefined);
  }
  const found = verdict;
  const speed = (b: Backend) => found.msPerRun[b] ?? Infinity;
  return {
    order: [...viable].sort((a, b) => speed(a) - speed(b)),
    passedOver: (backend) => ({ backend, error: probeReason(backend, found, remembered) }),
  };
}

/** One backend's speed in this page: the probe's ms a run and the large MatMul's GFLOP/s. */
export interface BackendSpeed {
  backend: Backend;
  probeMsPerRun?: number;
  /** 2 × multiply-adds ÷ seconds of a large MatMul (`matmulThroughput`), in 10⁹ a second. */
  matmulGflops?: number;
  /** The multiply-adds of the MatMul graph it was measured on. */
  matmulMultiplyAdds?: number;
  /** Why it could not be measured (unavailable, or a failure). */
  error?: string;
}

/**
 * The large-MatMul graphs, each 8× the work of the one before: 0.27, 2.1 and
 * 17 G multiply-adds. A backend is timed on the first whose run takes 100 ms
 * or more (or the last), so a fast one is not measured on its per-call
 * overhead and a slow one (0.3 GFLOP/s for a software adapter) not for minutes.
 */
export const THROUGHPUT_LADDER: readonly (readonly [rows: number, n: number, layers: number])[] = [
  [256, 1024, 1],
  [512, 1024, 4],
  [1024, 2048, 4],
];

/** GFLOP/s of `backend` on a large MatMul, and the multiply-adds of the graph it was timed on. */
export async function matmulThroughput(
  host: RuntimeHost,
  backend: Backend,
  { now = () => performance.now(), ladder = THROUGHPUT_LADDER } = {},
): Promise<{ gflops: number; multiplyAdds: number }> {
  let result = { gflops: 0, multiplyAdds: 0 };
  for (const [rows, n, layers] of ladder) {
    const graph = throughputGraph(rows, n, layers);
    const runMs = await timeGraph(host, backend, graph, { runs: 3, budgetMs: 1000, now });
    result = { gflops: (2 * graph.multiplyAdds) / (runMs * 1e6), multiplyAdds: graph.multiplyAdds };
    if (runMs >= 100) break;
  }
  return result;
}

/**
 * Measures every backend the host offers: the probe, and a large MatMul
 * (`matmulThroughput`).
 */
export async function measureBackends(
  host: RuntimeHost,
  { now = () => performance.now(), ladder = THROUGHPUT_LADDER } = {},
): Promise<{ speeds: BackendSpeed[]; verdict: ProbeVerdict | null }> {
  const speeds: BackendSpeed[] = [];
  const available: Backend[] = [];
  for (const backend of host.preference) {
    const unavailable = await host.unavailableReason(backend);
    if (unavailable === null) available.push(backend);
    else speeds.push({ backend, error: unavailable });
  }
  const verdict = await probeBackends(host, available, { now });
  for (const backend of available) {
    const speed: BackendSpeed = { backend };
    const probeMs = verdict?.msPerRun[backend];
    if (probeMs !== undefined) speed.probeMsPerRun = probeMs;
    try {
      const { gflops, multiplyAdds } = await matmulThroughput(host, backend, { now, ladder });
      speed.matmulGflops = gflops;
      speed.matmulMultiplyAdds = multiplyAdds;
    } catch (error) {
      speed.error = errorMessage(error);
    }
    const failure = verdict?.failed[backend];
    if (failure !== undefined) speed.error = failure;
    speeds.push(speed);
  }
  return { speeds, verdict };
}

/** The probe's verdict in one line: "wasm: measured 3.1× faster than this WebGPU adapter on a probe (…)". */
export function describeVerdict(verdict: ProbeVerdict): string {
  const others = (Object.keys(verdict.msPerRun) as Backend[]).filter((b) => b !== verdict.winner);
  const fast = verdict.msPerRun[verdict.winner]!;
  if (others.length === 0) return `${verdict.winner}: the only backend the probe could run`;
  return `${verdict.winner}: ${others
    .map((b) => {
      const slow = verdict.msPerRun[b]!;
      return `measured ${(slow / fast).toFixed(1)}× faster than ${b === 'webgpu' ? 'this WebGPU adapter' : b} on a probe (${ms(fast)} against ${ms(slow)} ms a run)`;
    })
    .join('; ')}`;
}
