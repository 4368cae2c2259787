import { cpSync, existsSync, readdirSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import react from '@vitejs/plugin-react';
import { defaultClientConditions, defineConfig, type Plugin } from 'vite';
import { CONTENT_SECURITY_POLICY, ISOLATION_HEADERS, serveFiles } from './src/node/static-files.ts';

const here = import.meta.dirname;
const releaseDir = resolve(here, 'models/release');

/**
 * Serves `dir` at `/<prefix>/` in dev and preview, and copies it into the build:
 * - `release`: the factory's committed release folder (graphs, manifests);
 * - `ort`: onnxruntime-web's wasm runtime, loaded at run time rather than
 *   bundled, so that its thread workers start from its own script and not
 *   from our worker's bundle;
 * - `tfjs`: tfjs-backend-wasm's .wasm files (found through setWasmPaths).
 * Missing files under the prefix are 404s (src/node/static-files.ts).
 */
function serveFolder(prefix: string, dir: string, include: (path: string) => boolean): Plugin {
  const middleware = serveFiles(dir, include);
  return {
    name: `d2nwg-serve-${prefix}`,
    configureServer: (server) => void server.middlewares.use(`/${prefix}`, middleware),
    configurePreviewServer: (server) => void server.middlewares.use(`/${prefix}`, middleware),
    writeBundle(options) {
      cpSync(dir, join(options.dir ?? 'dist', prefix), {
        recursive: true,
        filter: (source) => source === dir || include(relative(dir, source)),
      });
    },
  };
}

/**
 * precache.json: what the service worker (public/sw.js) caches on install so the
 * app opens offline: the page, every emitted script and style, the runtimes' wasm.
 */
function precacheList(): Plugin {
  return {
    name: 'd2nwg-precache',
    apply: 'build',
    generateBundle(_options, bundle) {
      const files = [
        './',
        ...Object.keys(bundle).filter((name) => name !== 'precache.json'),
        ...[...ortFiles].map((name) => `ort/${name}`),
        ...tfjsWasmFiles.map((name) => `tfjs/${name}`),
        // What the page reads on opening; the graphs are kept as they are first used.
        ...readdirSync(releaseDir, { withFileTypes: true })
          .filter((entry) => entry.isDirectory())
          .flatMap((entry) =>
            ['manifest.json', 'backbone.json']
              .filter((file) => existsSync(join(releaseDir, entry.name, file)))
              .map((file) => `release/${entry.name}/${file}`),
          ),
        'release/slice/mlp.onnx',
        'release/slice/trace.json',
        // The demo list; a demo's images are kept as they are first used.
        ...(existsSync(resolve(here, 'public/demo/index.json')) ? ['demo/index.json'] : []),
      ];
      this.emitFile({ type: 'asset', fileName: 'precache.json', source: JSON.stringify(files) });
    },
  };
}

// tfjs-backend-wasm's single-thread builds (web-tf.ts turns its threads off).
const tfjsWasmFiles = ['tfjs-backend-wasm-simd.wasm', 'tfjs-backend-wasm.wasm'];
const ortFiles = new Set(['ort-wasm-simd-threaded.jsep.mjs', 'ort-wasm-simd-threaded.jsep.wasm']);

export default defineConfig({
  plugins: [
    react(),
    precacheList(),
    // Everything the page loads; not the PyTorch checkpoints (*.pt), which only the factory reads.
    serveFolder('release', releaseDir, (path) => !path.endsWith('.pt')),
    serveFolder('ort', resolve(here, 'node_modules/onnxruntime-web/dist'), (path) =>
      ortFiles.has(path),
    ),
    serveFolder('tfjs', resolve(here, 'node_modules/@tensorflow/tfjs-backend-wasm/dist'), (path) =>
      /^[^/]+\.wasm$/.test(path),
    ),
  ],
  // onnxruntime-web's build that loads its wasm runtime from env.wasm.wasmPaths.
  resolve: { conditions: ['onnxruntime-web-use-extern-wasm', ...defaultClientConditions] },
  worker: { format: 'es' },
  // The dev server injects inline scripts (hot reload), so only the built app gets the CSP.
  server: { headers: ISOLATION_HEADERS },
  preview: {
    headers: { ...ISOLATION_HEADERS, 'Content-Security-Policy': CONTENT_SECURITY_POLICY },
  },
  build: { chunkSizeWarningLimit: 4096 },
});
