import { cpSync, createReadStream, existsSync, statSync } from 'node:fs';
import { extname, join, normalize, relative, resolve } from 'node:path';
import react from '@vitejs/plugin-react';
import { defaultClientConditions, defineConfig, type Connect, type Plugin } from 'vite';

const here = import.meta.dirname;

// Cross-origin isolation lets onnxruntime-web use wasm threads (SharedArrayBuffer).
const isolationHeaders = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

const contentTypes: Record<string, string> = {
  '.json': 'application/json',
  '.onnx': 'application/octet-stream',
  '.safetensors': 'application/octet-stream',
  '.bin': 'application/octet-stream',
  '.png': 'image/png',
  '.md': 'text/markdown; charset=utf-8',
  '.mjs': 'text/javascript',
  '.wasm': 'application/wasm',
};

/**
 * Serves `dir` at `/<prefix>/` in dev and preview, and copies it into the build:
 * - `release`: the factory's committed release folder (graphs, manifests);
 * - `ort`: onnxruntime-web's wasm runtime, loaded at run time rather than
 *   bundled, so that its thread workers start from its own script and not
 *   from our worker's bundle;
 * - `tfjs`: tfjs-backend-wasm's .wasm files (found through setWasmPaths).
 */
function serveFolder(prefix: string, dir: string, include: (path: string) => boolean): Plugin {
  const middleware: Connect.NextHandleFunction = (req, res, next) => {
    const requestPath = normalize(decodeURIComponent((req.url ?? '/').split('?')[0] ?? '/'));
    const file = join(dir, requestPath);
    if (
      !file.startsWith(dir) ||
      !include(relative(dir, file)) ||
      !existsSync(file) ||
      !statSync(file).isFile()
    ) {
      next();
      return;
    }
    res.setHeader('Content-Type', contentTypes[extname(file)] ?? 'application/octet-stream');
    for (const [name, value] of Object.entries(isolationHeaders)) res.setHeader(name, value);
    createReadStream(file).pipe(res);
  };
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

const ortFiles = new Set(['ort-wasm-simd-threaded.jsep.mjs', 'ort-wasm-simd-threaded.jsep.wasm']);

export default defineConfig({
  plugins: [
    react(),
    // Everything the page loads; not the PyTorch checkpoints (*.pt), which only the factory reads.
    serveFolder('release', resolve(here, 'models/release'), (path) => !path.endsWith('.pt')),
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
  server: { headers: isolationHeaders },
  preview: { headers: isolationHeaders },
  build: { chunkSizeWarningLimit: 4096 },
});
