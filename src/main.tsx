import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { App } from './app/App';
import { backendFromQuery } from './app/backendChoice';
import { StoreContext } from './app/context';
import { createAppStore } from './app/store';
import { startWorker, type WorkerClient } from './worker/client';
import { startServiceWorker } from './app/offline';
import './styles.css';

// The engine's worker starts once the service worker controls the page, so that the
// models it fetches are kept for offline visits.
const serviceWorker = startServiceWorker();
let client: WorkerClient | null = null;
const store = createAppStore({
  client: () => (client ??= startWorker(serviceWorker)),
  releaseUrl: `${import.meta.env.BASE_URL}release/`,
  demoUrl: `${import.meta.env.BASE_URL}demo/`,
});

const root = document.getElementById('root');
if (root === null) throw new Error('index.html has no #root element');
createRoot(root).render(
  <StrictMode>
    <StoreContext value={store}>
      <App
        serviceWorker={serviceWorker}
        initialBackend={backendFromQuery(window.location.search)}
        initialFeatureBackend={backendFromQuery(window.location.search, 'features')}
      />
    </StoreContext>
  </StrictMode>,
);
