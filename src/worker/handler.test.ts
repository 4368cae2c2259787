import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { directorySource, nodeHost } from '../engine/node-host';
import { createSerialHandler, handleRequest } from './handler';
import type { WorkerEvent } from './protocol';

const releaseDir = fileURLToPath(new URL('../../models/release/', import.meta.url));

async function run(releaseUrl: string): Promise<WorkerEvent[]> {
  const events: WorkerEvent[] = [];
  await handleRequest(
    { type: 'run-slice', requestId: 7, backend: 'cpu', releaseUrl },
    {
      host: nodeHost,
      post: (event) => events.push(event),
      source: (url) => directorySource(releaseDir + url),
    },
  );
  return events;
}

describe('worker request handling', () => {
  it('answers run-slice with its stages in order, then one result', async () => {
    const events = await run('slice');
    expect(events.map((e) => (e.type === 'progress' ? e.stage : e.type))).toEqual([
      'loading',
      'selecting-backend',
      'slice-result',
    ]);
    expect(events.every((e) => e.requestId === 7)).toBe(true);
    const last = events.at(-1);
    expect(last?.type === 'slice-result' && last.result.passed).toBe(true);
  });

  it('turns a missing release folder into an error event, not a crash', async () => {
    const events = await run('no-such-release');
    const last = events.at(-1);
    expect(last?.type).toBe('error');
    expect(last?.type === 'error' && last.message).toMatch(/no-such-release.*manifest\.json/);
  });
});

describe('serial request handling', () => {
  it('answers overlapping requests one after the other, each completely', async () => {
    const events: WorkerEvent[] = [];
    const handle = createSerialHandler({
      host: nodeHost,
      post: (event) => events.push(event),
      source: (url) => directorySource(releaseDir + url),
    });
    const releaseUrl = 'slice';
    await Promise.all([
      handle({ type: 'run-slice', requestId: 1, backend: 'cpu', releaseUrl }),
      handle({ type: 'run-slice', requestId: 2, backend: 'cpu', releaseUrl }),
    ]);
    expect(events.map((e) => e.requestId)).toEqual([1, 1, 1, 2, 2, 2]);
    expect(events.filter((e) => e.type === 'slice-result')).toHaveLength(2);
  });
});
