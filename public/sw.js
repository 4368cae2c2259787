// The app's service worker: the app works offline after one visit.
// - On install it caches the app shell listed in precache.json (written by the
//   build: the page, its scripts and styles, the runtimes' wasm files).
// - Every other same-origin GET (release manifests and graphs) goes to the network
//   first, so an online visit always gets current files, and its answer is kept;
//   offline, the kept answer is served.
// The page's "Clear cached models" button deletes the cache (message 'clear-cache').

const CACHE = 'd2nwg-app-v1';

self.addEventListener('install', (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(CACHE);
      const list = await fetch(new URL('precache.json', self.registration.scope), {
        cache: 'no-store',
      });
      if (list.ok)
        await cache.addAll((await list.json()).map((p) => new URL(p, self.registration.scope)));
      await self.skipWaiting();
    })(),
  );
});

self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

self.addEventListener('fetch', (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== 'GET' || url.origin !== self.location.origin) return;
  if (request.headers.has('range')) return; // partial answers are not kept
  event.respondWith(
    (async () => {
      const cache = await caches.open(CACHE);
      try {
        const response = await fetch(request);
        if (response.status === 200) await cache.put(request, response.clone());
        return response;
      } catch (error) {
        const kept =
          (await cache.match(request, { ignoreVary: true })) ??
          (request.mode === 'navigate'
            ? await cache.match(new URL('./', self.registration.scope))
            : undefined);
        if (kept !== undefined) return kept;
        throw error;
      }
    })(),
  );
});

self.addEventListener('message', (event) => {
  if (event.data === 'clear-cache')
    event.waitUntil(
      caches
        .delete(CACHE)
        .then((deleted) => event.source?.postMessage({ type: 'cache-cleared', deleted })),
    );
});
