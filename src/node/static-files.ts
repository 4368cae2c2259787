// How the app's server (Vite's dev and preview servers, vite.config.ts) serves
// the release folder and the runtimes' wasm files: 404 for what is not there,
// Content-Length, an ETag with If-None-Match, Cache-Control, single byte
// ranges (206 / 416), and the cross-origin isolation headers.

import { createReadStream, statSync, type Stats } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname, join, normalize, relative } from 'node:path';

/** Cross-origin isolation lets onnxruntime-web use wasm threads (SharedArrayBuffer). */
export const ISOLATION_HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

/**
 * Only the page's own origin: scripts, workers, wasm, styles, images, fetches.
 * 'wasm-unsafe-eval' compiles the runtimes' WebAssembly; blob: workers and images
 * are made by the page (onnxruntime-web's proxy, downloads, thumbnails).
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self' 'wasm-unsafe-eval'",
  "worker-src 'self' blob:",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' blob: data:",
  "connect-src 'self' blob: data:",
  "object-src 'none'",
  "base-uri 'self'",
  "frame-ancestors 'none'",
].join('; ');

const CONTENT_TYPES: Record<string, string> = {
  '.json': 'application/json',
  '.onnx': 'application/octet-stream',
  '.safetensors': 'application/octet-stream',
  '.bin': 'application/octet-stream',
  '.png': 'image/png',
  '.md': 'text/markdown; charset=utf-8',
  '.mjs': 'text/javascript',
  '.wasm': 'application/wasm',
};

function fail(res: ServerResponse, status: number, message: string): void {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/plain; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(message));
  res.end(message);
}

/** A weak validator from size and modification time: cheap, and changes whenever the file does. */
function etag(stats: Stats): string {
  return `W/"${stats.size.toString(16)}-${Math.floor(stats.mtimeMs).toString(16)}"`;
}

/**
 * A handler for the files of `dir` that `include` admits, mounted at a prefix
 * (the request URL is relative to it). Anything else under the prefix is a 404.
 */
export function serveFiles(
  dir: string,
  include: (path: string) => boolean,
): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    let requestPath: string;
    try {
      requestPath = normalize(decodeURIComponent((req.url ?? '/').split('?')[0] ?? '/'));
    } catch {
      fail(res, 400, 'bad request path');
      return;
    }
    const file = join(dir, requestPath);
    const path = relative(dir, file);
    let stats: Stats | undefined;
    try {
      stats = statSync(file);
    } catch {
      stats = undefined;
    }
    if (!file.startsWith(dir) || !include(path) || stats === undefined || !stats.isFile()) {
      fail(res, 404, `not found: ${requestPath}`);
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      fail(res, 405, 'method not allowed');
      return;
    }
    for (const [name, value] of Object.entries(ISOLATION_HEADERS)) res.setHeader(name, value);
    res.setHeader('Content-Type', CONTENT_TYPES[extname(file)] ?? 'application/octet-stream');
    // Revalidated on every use (a release keeps its file names), answered by 304 when unchanged.
    res.setHeader('Cache-Control', 'no-cache');
    res.setHeader('ETag', etag(stats));
    res.setHeader('Accept-Ranges', 'bytes');
    if (req.headers['if-none-match'] === etag(stats)) {
      res.statusCode = 304;
      res.end();
      return;
    }
    let start = 0;
    let end = stats.size - 1;
    const range = req.headers.range;
    if (range !== undefined) {
      const match = /^bytes=(\d*)-(\d*)$/.exec(range.trim());
      const from = match?.[1] ?? '';
      const to = match?.[2] ?? '';
      if (match === null || (from === '' && to === '')) {
        res.setHeader('Content-Range', `bytes */${stats.size}`);
        fail(res, 416, 'only one byte range of the form bytes=start-end is served');
        return;
      }
      if (from === '') start = Math.max(0, stats.size - Number(to));
      else {
        start = Number(from);
        if (to !== '') end = Math.min(end, Number(to));
      }
      if (start > end || start >= stats.size) {
        res.setHeader('Content-Range', `bytes */${stats.size}`);
        fail(res, 416, 'range not satisfiable');
        return;
      }
      res.statusCode = 206;
      res.setHeader('Content-Range', `bytes ${start}-${end}/${stats.size}`);
    }
    res.setHeader('Content-Length', end - start + 1);
    if (req.method === 'HEAD' || stats.size === 0) {
      res.end();
      return;
    }
    createReadStream(file, { start, end }).pipe(res);
  };
}
