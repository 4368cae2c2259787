import { BACKENDS, parseBackendRequest, type BackendRequest } from '../engine/runtime';

/** What the page offers: `cpu` is onnxruntime-node's, not a browser backend. */
export const BACKEND_CHOICES: readonly BackendRequest[] = [
  'auto',
  ...BACKENDS.filter((b) => b !== 'cpu'),
];

/** `?backend=webgpu|wasm|auto` forces a backend; anything else means auto. */
export function backendFromQuery(search: string): BackendRequest {
  const value = new URLSearchParams(search).get('backend');
  if (value === null) return 'auto';
  try {
    const request = parseBackendRequest(value);
    return BACKEND_CHOICES.includes(request) ? request : 'auto';
  } catch {
    return 'auto';
  }
}
