import { useEffect } from 'react';
import type { BackendRequest } from '../engine/runtime';
import { useAppStore } from './context';
import { RuntimeSliceCard } from './RuntimeSliceCard';

export function App({ initialBackend }: { initialBackend: BackendRequest }) {
  const setBackendRequest = useAppStore((s) => s.setBackendRequest);
  const runSlice = useAppStore((s) => s.runSlice);
  useEffect(() => {
    setBackendRequest(initialBackend);
    void runSlice();
  }, [initialBackend, setBackendRequest, runSlice]);

  return (
    <main>
      <header>
        <h1>D2NWG Web</h1>
        <p>
          Neural-network weights generated for your image dataset, in your browser. Nothing leaves
          this page.
        </p>
      </header>
      <RuntimeSliceCard />
    </main>
  );
}
