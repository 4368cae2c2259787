// Where the page keeps what `auto` measured (backend-probe.ts), between
// visits: IndexedDB, which the engine's worker can reach (localStorage cannot
// be reached from a worker). The page's "Clear cached models" deletes it.

import type { ProbeVerdict, VerdictStore } from './backend-probe';

const DATABASE = 'd2nwg-backend-probes';
const STORE = 'verdicts';

/** Opens the database for one transaction and closes it after, so deleting it is never blocked. */
async function withStore<T>(
  mode: IDBTransactionMode,
  request: (store: IDBObjectStore) => IDBRequest<T>,
): Promise<T> {
  const db = await new Promise<IDBDatabase>((resolve, reject) => {
    const opening = indexedDB.open(DATABASE, 1);
    opening.onupgradeneeded = () => opening.result.createObjectStore(STORE);
    opening.onsuccess = () => resolve(opening.result);
    opening.onerror = () => reject(opening.error ?? new Error(`could not open ${DATABASE}`));
  });
  try {
    return await new Promise<T>((resolve, reject) => {
      const asked = request(db.transaction(STORE, mode).objectStore(STORE));
      asked.onsuccess = () => resolve(asked.result);
      asked.onerror = () => reject(asked.error ?? new Error(`could not use ${DATABASE}`));
    });
  } finally {
    db.close();
  }
}

/** Verdicts kept in this browser; without IndexedDB (some private modes), nothing is kept. */
export const indexedDbVerdicts: VerdictStore = {
  get: async (key) =>
    globalThis.indexedDB === undefined
      ? undefined
      : ((await withStore('readonly', (s) => s.get(key))) as ProbeVerdict | undefined),
  set: async (key, verdict) => {
    if (globalThis.indexedDB !== undefined)
      await withStore('readwrite', (s) => s.put(verdict, key));
  },
};

/** Forgets every kept verdict: the next `auto` measures again. */
export function clearKeptVerdicts(): void {
  globalThis.indexedDB?.deleteDatabase(DATABASE);
}
