// Runtime choice in one place. `selectBackend` tries backends one at a time,
// proving each by creating a real session on it, so the backend it reports is
// the one that ran (a session given several providers would not say which).

import type { InferenceSession, Tensor } from 'onnxruntime-common';

export const BACKENDS = ['webgpu', 'wasm', 'cpu'] as const;
export type Backend = (typeof BACKENDS)[number];
export type BackendRequest = 'auto' | Backend;

export function parseBackendRequest(value: string): BackendRequest {
  if (value === 'auto' || (BACKENDS as readonly string[]).includes(value)) {
    return value as BackendRequest;
  }
  throw new Error(`unknown backend "${value}"; choose one of auto, ${BACKENDS.join(', ')}`);
}

/** What we use of an ONNX Runtime package: onnxruntime-web in the page, onnxruntime-node in Node. */
export interface OrtPackage {
  InferenceSession: {
    create(model: Uint8Array, options?: InferenceSession.SessionOptions): Promise<InferenceSession>;
  };
  Tensor: typeof Tensor;
}

/** One place that can run graphs: the page's worker or a Node process. */
export interface RuntimeHost {
  readonly name: 'browser' | 'node';
  readonly ort: OrtPackage;
  /** The backends this host offers, in the order `auto` tries them. */
  readonly preference: readonly Backend[];
  /** Null when `backend` may work here; otherwise why it cannot (for example, no WebGPU adapter). */
  unavailableReason(backend: Backend): Promise<string | null>;
  /** Why `auto` should pass over `backend` although it works (a software WebGPU adapter). */
  autoSkipReason?(backend: Backend): Promise<string | null>;
  /**
   * The order in which `auto` tries the backends it could not rule out
   * (`viable`, in preference order, at least two): by measured speed where the
   * host measures them (backend-probe.ts); absent, the preference order stands.
   */
  autoOrder?(viable: readonly Backend[]): Promise<AutoOrder>;
}

export interface AutoOrder {
  order: Backend[];
  /** Why `auto` put `backend` behind the one it took ("measured 3.1× slower than wasm on a probe …"). */
  passedOver(backend: Backend): BackendAttempt;
}

export interface BackendAttempt {
  readonly backend: Backend;
  readonly error: string;
}

export interface SelectedBackend {
  readonly backend: Backend;
  /** Backends tried before this one, and why each failed. */
  readonly skipped: readonly BackendAttempt[];
  readonly host: RuntimeHost;
  /** Creates a session on the selected backend only. */
  createSession(model: Uint8Array): Promise<InferenceSession>;
}

export class BackendUnavailableError extends Error {
  constructor(
    readonly request: BackendRequest,
    readonly attempts: readonly BackendAttempt[],
  ) {
    super(
      `no backend could run the model (asked for ${request}): ` +
        attempts.map((a) => `${a.backend}: ${a.error}`).join('; '),
    );
    this.name = 'BackendUnavailableError';
  }
}

/**
 * One line for people: whitespace collapsed, and the C++ source location and
 * failed assertion that native ONNX Runtime errors start with removed.
 */
export function errorMessage(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message
    .replace(/\s+/g, ' ')
    .replace(/^\/\S+\.(?:cc|cpp|h):\d+ .*? was false\. /, '')
    .trim();
}

export function sessionOptions(backend: Backend): InferenceSession.SessionOptions {
  // Errors only: onnxruntime's notices (such as "Some nodes were not assigned to the preferred
  // execution providers" on WebGPU) are not faults, and would read as errors in a page's console.
  return { executionProviders: [backend], graphOptimizationLevel: 'all', logSeverityLevel: 3 };
}

/**
 * Picks the backend for `request` on `host` by opening `probeModel` on each
 * candidate in turn. `auto` rules out what the host says cannot or should not
 * run (no adapter; a software adapter), lets the host order the rest by
 * measured speed (`autoOrder`), and tries them in that order; a named backend
 * is tried alone. Returns the backend that opened the model and that model's
 * session; its `skipped` says why each backend before it was not taken.
 */
export async function selectBackend(
  request: BackendRequest,
  host: RuntimeHost,
  probeModel: Uint8Array,
): Promise<{ selected: SelectedBackend; probeSession: InferenceSession }> {
  const candidates: readonly Backend[] = request === 'auto' ? host.preference : [request];
  const attempts: BackendAttempt[] = [];
  let viable: Backend[] = [];
  for (const [i, backend] of candidates.entries()) {
    const last = i === candidates.length - 1;
    const reason = !host.preference.includes(backend)
      ? `not offered in ${host.name} (offered: ${host.preference.join(', ')})`
      : ((await host.unavailableReason(backend)) ??
        (request === 'auto' && !last ? ((await host.autoSkipReason?.(backend)) ?? null) : null));
    if (reason === null) viable.push(backend);
    else attempts.push({ backend, error: reason });
  }
  let measured: AutoOrder | null = null;
  if (request === 'auto' && viable.length > 1 && host.autoOrder !== undefined) {
    measured = await host.autoOrder(viable);
    viable = measured.order;
  }
  for (const [i, backend] of viable.entries()) {
    try {
      const probeSession = await host.ort.InferenceSession.create(
        probeModel,
        sessionOptions(backend),
      );
      const selected: SelectedBackend = {
        backend,
        // Then the backends a measurement put behind this one, and why.
        skipped: [
          ...attempts,
          ...(measured === null ? [] : viable.slice(i + 1).map(measured.passedOver)),
        ],
        host,
        createSession: (model) => host.ort.InferenceSession.create(model, sessionOptions(backend)),
      };
      return { selected, probeSession };
    } catch (error) {
      attempts.push({ backend, error: errorMessage(error) });
    }
  }
  throw new BackendUnavailableError(request, attempts);
}

/** A one-line description for people: "wasm (webgpu skipped: no adapter)". */
export function describeBackend(selected: Pick<SelectedBackend, 'backend' | 'skipped'>): string {
  if (selected.skipped.length === 0) return selected.backend;
  const why = selected.skipped.map((a) => `${a.backend} skipped: ${a.error}`).join('; ');
  return `${selected.backend} (${why})`;
}
