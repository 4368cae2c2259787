// Global setup for the browser tests: a production build of the app, served by
// `vite preview` on a free loopback port that the tests receive as `appUrl`.

import { resolve } from 'node:path';
import { build, preview, type PreviewServer } from 'vite';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    appUrl: string;
  }
}

const root = resolve(import.meta.dirname, '..');
let server: PreviewServer | undefined;

export async function setup(project: TestProject): Promise<void> {
  // Vitest sets NODE_ENV=test; the browser tests exercise the production build.
  process.env.NODE_ENV = 'production';
  await build({ root, mode: 'production', logLevel: 'warn' });
  server = await preview({ root, preview: { host: '127.0.0.1', port: 0, strictPort: false } });
  const url = server.resolvedUrls?.local[0];
  if (url === undefined) throw new Error('vite preview did not report a URL');
  project.provide('appUrl', url);
}

export async function teardown(): Promise<void> {
  await server?.close();
}
