import { useEffect } from 'react';
import type { BackendRequest } from '../engine/runtime';
import { BACKEND_CHOICES } from './backendChoice';
import { BackendSpeedCard } from './BackendSpeedCard';
import { useAppStore } from './context';
import { FeaturesCard } from './FeaturesCard';
import { GenerateCard, GeneratorChecksCard } from './GenerateCard';
import { OfflineCache } from './OfflineCache';
import { RuntimeSliceCard } from './RuntimeSliceCard';

export function App({
  initialBackend,
  initialFeatureBackend = null,
  serviceWorker = Promise.resolve('none'),
}: {
  initialBackend: BackendRequest;
  initialFeatureBackend?: BackendRequest | null;
  /** The offline cache's start (app/offline.ts). */
  serviceWorker?: Promise<string>;
}) {
  const backendRequest = useAppStore((s) => s.backendRequest);
  const setBackendRequest = useAppStore((s) => s.setBackendRequest);
  const setFeatureBackendRequest = useAppStore((s) => s.setFeatureBackendRequest);
  const runSlice = useAppStore((s) => s.runSlice);
  const loadRelease = useAppStore((s) => s.loadRelease);
  const loadDemos = useAppStore((s) => s.loadDemos);
  useEffect(() => {
    setBackendRequest(initialBackend);
    setFeatureBackendRequest(initialFeatureBackend);
    void loadRelease();
    void loadDemos();
    void runSlice();
  }, [
    initialBackend,
    initialFeatureBackend,
    setBackendRequest,
    setFeatureBackendRequest,
    runSlice,
    loadRelease,
    loadDemos,
  ]);

  return (
    <main>
      <header>
        <h1>D2NWG Web</h1>
        <p>
          Drop a folder of images, one sub-folder per class, and get neural-network weights
          generated for it in seconds: a classifier head for a frozen image backbone, or every
          weight of a small CNN. Everything runs in this page; no image leaves your browser.
        </p>
        <label>
          Backend{' '}
          <select
            data-testid="backend-select"
            value={backendRequest}
            onChange={(e) => setBackendRequest(e.target.value as BackendRequest)}
          >
            {BACKEND_CHOICES.map((b) => (
              <option key={b} value={b}>
                {b}
              </option>
            ))}
          </select>
        </label>
        <OfflineCache serviceWorker={serviceWorker} />
      </header>
      <GenerateCard />
      <details className="diagnostics" data-testid="diagnostics">
        <summary>
          Diagnostics: runtime check, backend speed, backbone features, agreement with the factory
        </summary>
        <RuntimeSliceCard />
        <BackendSpeedCard />
        <FeaturesCard />
        <GeneratorChecksCard />
      </details>
    </main>
  );
}
