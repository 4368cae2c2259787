import type { InferenceSession } from 'onnxruntime-common';
import { describe, expect, it } from 'vitest';
import {
  describeVerdict,
  measureBackends,
  memoryVerdictStore,
  probeGraph,
  probeOrder,
  throughputGraph,
} from './backend-probe';
import { nodeHost } from './node-host';
import { describeBackend, selectBackend, type Backend, type RuntimeHost } from './runtime';

/**
 * A browser-like host whose sessions take the given milliseconds a run on a
 * clock of their own: the probe's decision without a browser or real timing.
 */
function timedHost(
  msPerRun: Partial<Record<Backend, number>>,
  { software = false, failProbe = [] as Backend[] } = {},
) {
  let clock = 0;
  const runs: Backend[] = [];
  const store = memoryVerdictStore();
  const probeBytes = probeGraph().model.length;
  const host: RuntimeHost = {
    name: 'browser',
    preference: ['webgpu', 'wasm'],
    ort: {
      InferenceSession: {
        create: (model, options) => {
          const backend = options?.executionProviders?.[0] as Backend;
          if (failProbe.includes(backend) && model.length === probeBytes)
            return Promise.reject(new Error('device lost'));
          return Promise.resolve({
            run: () => {
              runs.push(backend);
              clock += msPerRun[backend]!;
              return Promise.resolve({});
            },
            release: () => Promise.resolve(),
          } as unknown as InferenceSession);
        },
      },
      // The probe's input: its values do not matter to these sessions.
      Tensor: function Tensor() {} as unknown as RuntimeHost['ort']['Tensor'],
    },
    unavailableReason: () => Promise.resolve(null),
    autoSkipReason: (backend) =>
      Promise.resolve(software && backend === 'webgpu' ? 'the WebGPU adapter is software' : null),
    autoOrder: (viable) =>
      probeOrder(host, viable, { key: () => Promise.resolve('adapter | app 1'), store, now }),
  };
  const now = () => clock;
  return { host, runs, store };
}

const model = new Uint8Array([1, 2, 3]);

describe('auto times the backends it cannot rule out', () => {
  it('takes wasm when it measured faster, says so, and keeps the verdict', async () => {
    const { host, runs, store } = timedHost({ webgpu: 2.5, wasm: 0.75 });
    const first = await selectBackend('auto', host, model);
    expect(first.selected.backend).toBe('wasm');
    expect(describeBackend(first.selected)).toBe(
      'wasm (webgpu skipped: measured 3.3× slower than wasm on a probe (2.5 against 0.75 ms a run))',
    );
    // One warm-up and five timed runs on each backend.
    expect(runs.filter((b) => b === 'webgpu')).toHaveLength(6);
    expect(runs.filter((b) => b === 'wasm')).toHaveLength(6);
    expect(store.entries.get('adapter | app 1')).toMatchObject({
      winner: 'wasm',
      msPerRun: { webgpu: 2.5, wasm: 0.75 },
      probeMs: 6 * 2.5 + 6 * 0.75,
    });

    // Once measured, remembered: no probe the second time.
    runs.length = 0;
    const second = await selectBackend('auto', host, model);
    expect(runs).toEqual([]);
    expect(describeBackend(second.selected)).toBe(
      'wasm (webgpu skipped: measured 3.3× slower than wasm on a probe ' +
        '(2.5 against 0.75 ms a run, remembered from an earlier measurement in this browser))',
    );
  });

  it('takes WebGPU when it measured faster, and says why wasm was passed over', async () => {
    const { host } = timedHost({ webgpu: 0.5, wasm: 2 });
    const { selected } = await selectBackend('auto', host, model);
    expect(describeBackend(selected)).toBe(
      'webgpu (wasm skipped: measured 4.0× slower than webgpu on a probe (2.0 against 0.50 ms a run))',
    );
  });

  it('keeps passing over a software adapter without timing it', async () => {
    const { host, runs } = timedHost({ webgpu: 0.1, wasm: 1 }, { software: true });
    const { selected } = await selectBackend('auto', host, model);
    expect(describeBackend(selected)).toBe('wasm (webgpu skipped: the WebGPU adapter is software)');
    expect(runs).toEqual([]);
  });

  it('puts a backend whose probe failed last, with the failure', async () => {
    const { host } = timedHost({ webgpu: 0.1, wasm: 1 }, { failProbe: ['webgpu'] });
    const { selected } = await selectBackend('auto', host, model);
    expect(describeBackend(selected)).toBe('wasm (webgpu skipped: its probe failed (device lost))');
  });

  it('measures again when the kept verdict does not cover the candidates', async () => {
    const { host, runs, store } = timedHost({ webgpu: 3, wasm: 1 });
    await store.set('adapter | app 1', {
      winner: 'cpu',
      msPerRun: { cpu: 1 },
      failed: {},
      probeMs: 10,
    });
    await selectBackend('auto', host, model);
    expect(runs.length).toBe(12);
  });

  it('times nothing for a backend asked for by name', async () => {
    const { host, runs } = timedHost({ webgpu: 3, wasm: 1 });
    const { selected } = await selectBackend('webgpu', host, model);
    expect(selected.backend).toBe('webgpu');
    expect(selected.skipped).toEqual([]);
    expect(runs).toEqual([]);
  });

  it('states the verdict in one line', () => {
    expect(
      describeVerdict({
        winner: 'wasm',
        msPerRun: { wasm: 0.8, webgpu: 2.48 },
        failed: {},
        probeMs: 40,
      }),
    ).toBe(
      'wasm: measured 3.1× faster than this WebGPU adapter on a probe (0.80 against 2.5 ms a run)',
    );
  });
});

describe('the probe and throughput graphs on onnxruntime-node', () => {
  it('are valid graphs with the multiply-adds they claim', async () => {
    expect(probeGraph().multiplyAdds).toBe(3 * 2 * 80 * 192 * 384);
    expect(throughputGraph(512, 1024, 4).multiplyAdds).toBe(4 * 512 * 1024 * 1024);
    const { speeds, verdict } = await measureBackends(
      { ...nodeHost, preference: ['cpu'] },
      { ladder: [[64, 256, 2]] },
    );
    expect(verdict?.winner).toBe('cpu');
    expect(speeds).toHaveLength(1);
    expect(speeds[0]!.probeMsPerRun).toBeGreaterThan(0);
    expect(speeds[0]!.matmulGflops).toBeGreaterThan(0);
    expect(speeds[0]!.matmulMultiplyAdds).toBe(2 * 64 * 256 * 256);
  });
});
