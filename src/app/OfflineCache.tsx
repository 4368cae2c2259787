import { useEffect, useState } from 'react';
import { clearOfflineCache } from './offline';

/** Says whether the app works offline here, and clears what the service worker keeps. */
export function OfflineCache({ serviceWorker }: { serviceWorker: Promise<string> }) {
  const [state, setState] = useState('starting');
  useEffect(() => {
    let live = true;
    void serviceWorker.then((s) => live && setState(s));
    const onMessage = (event: MessageEvent<{ type?: string }>) => {
      if (event.data?.type === 'cache-cleared') setState('cleared');
    };
    navigator.serviceWorker?.addEventListener('message', onMessage);
    return () => {
      live = false;
      navigator.serviceWorker?.removeEventListener('message', onMessage);
    };
  }, [serviceWorker]);
  if (state === 'none') return null;
  return (
    <p data-testid="offline-cache" data-state={state}>
      {state === 'starting' && 'Setting up the offline cache…'}
      {state === 'controlled' &&
        'This app and the models it loads are kept in this browser, so it also works offline.'}
      {state === 'cleared' &&
        'Cached models and measured backend speeds cleared; models load again from the server when used.'}
      {!['starting', 'controlled', 'cleared'].includes(state) && (
        <span className="error">{state}</span>
      )}{' '}
      {(state === 'controlled' || state === 'cleared') && (
        <button data-testid="clear-cache" onClick={clearOfflineCache}>
          Clear cached models
        </button>
      )}
    </p>
  );
}
