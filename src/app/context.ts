import { createContext, useContext } from 'react';
import { useStore } from 'zustand';
import type { AppState, createAppStore } from './store';

export const StoreContext = createContext<ReturnType<typeof createAppStore> | null>(null);

export function useAppStore<T>(selector: (state: AppState) => T): T {
  const store = useContext(StoreContext);
  if (store === null) throw new Error('useAppStore needs a StoreContext provider');
  return useStore(store, selector);
}
