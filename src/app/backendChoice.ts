import { BACKENDS, parseBackendRequest, type BackendRequest } from '../engine/runtime';

/** What the page offers: `cpu` is onnxruntime-node's, not a browser backend. */
export const BACKEND_CHOICES: readonly BackendRequest[] = [
  'auto',
  ...BACKENDS.filter((b) => b !== 'cpu'),
];

/**
 * `?backend=webgpu|wasm|auto` forces a backend; anything else means auto.
 * `?features=…` does the same for the backbone alone (null when not given: the same as the generator's).
 */
export function backendFromQuery(search: string): BackendRequest;
export function backendFromQuery(search: string, key: 'features'): BackendRequest | null;
export function backendFromQuery(search: string, key = 'backend'): BackendRequest | null {
  const value = new URLSearchParams(search).get(key);
  if (value === null) return key === 'backend' ? 'auto' : null;
  try {
    const request = parseBackendRequest(value);
    return BACKEND_CHOICES.includes(request) ? request : 'auto';
  } catch {
    return 'auto';
  }
}
