import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serveFiles } from './static-files';

describe('serving release files', () => {
  let server: Server;
  let base: string;
  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'd2nwg-serve-'));
    writeFileSync(join(dir, 'graph.onnx'), Buffer.from('0123456789'));
    writeFileSync(join(dir, 'secret.pt'), 'not served');
    server = createServer(serveFiles(dir, (path) => !path.endsWith('.pt')));
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((ok) => server.close(() => ok())));

  it('sends the file with its length, a validator, caching and isolation headers', async () => {
    const res = await fetch(`${base}/graph.onnx`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('0123456789');
    expect(res.headers.get('content-length')).toBe('10');
    expect(res.headers.get('cache-control')).toBe('no-cache');
    expect(res.headers.get('cross-origin-embedder-policy')).toBe('require-corp');
    const etag = res.headers.get('etag')!;
    expect(etag).toMatch(/^W\/"a-[0-9a-f]+"$/);
    const again = await fetch(`${base}/graph.onnx`, { headers: { 'If-None-Match': etag } });
    expect(again.status).toBe(304);
  });

  it('answers 404 for a missing or excluded file, and for paths out of the folder', async () => {
    for (const path of ['/missing.json', '/secret.pt', '/../etc/passwd', '/%2e%2e/x'])
      expect((await fetch(`${base}${path}`)).status, path).toBe(404);
  });

  it('honours one byte range, and refuses one it cannot satisfy', async () => {
    const part = await fetch(`${base}/graph.onnx`, { headers: { Range: 'bytes=2-5' } });
    expect(part.status).toBe(206);
    expect(await part.text()).toBe('2345');
    expect(part.headers.get('content-range')).toBe('bytes 2-5/10');
    const tail = await fetch(`${base}/graph.onnx`, { headers: { Range: 'bytes=-3' } });
    expect(await tail.text()).toBe('789');
    const beyond = await fetch(`${base}/graph.onnx`, { headers: { Range: 'bytes=20-30' } });
    expect(beyond.status).toBe(416);
    expect(beyond.headers.get('content-range')).toBe('bytes */10');
  });
});
