// The service worker (public/sw.js) that keeps the app and the models it has
// loaded, so that a later visit works offline. Only the built app registers it.

import { clearKeptVerdicts } from '../engine/web-verdicts';

/** Resolves once the service worker controls this page (or at once where there is none). */
export function startServiceWorker(timeoutMs = 10_000): Promise<'controlled' | 'none' | string> {
  if (!import.meta.env.PROD || !('serviceWorker' in navigator)) return Promise.resolve('none');
  const controlled = new Promise<'controlled'>((resolve) => {
    if (navigator.serviceWorker.controller !== null) resolve('controlled');
    else navigator.serviceWorker.addEventListener('controllerchange', () => resolve('controlled'));
  });
  const registered = navigator.serviceWorker
    .register(`${import.meta.env.BASE_URL}sw.js`)
    .then(() => controlled)
    .catch((error: unknown) => `the offline cache could not start: ${String(error)}`);
  // Never hold the page back for long: without the worker it still runs, only not offline.
  const timeout = new Promise<string>((resolve) =>
    setTimeout(() => resolve('the offline cache did not start in time'), timeoutMs),
  );
  return Promise.race([registered, timeout]);
}

/** Deletes everything the service worker keeps, and the backend speeds `auto` measured here. */
export function clearOfflineCache(): void {
  clearKeptVerdicts();
  navigator.serviceWorker.controller?.postMessage('clear-cache');
}
