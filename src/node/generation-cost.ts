// The arithmetic of one generation, stage by stage: the release's generator
// runs once in Node at the given sizes (onnxruntime-node, cpu) with every
// session's calls recorded; each graph's multiply-adds per call are counted at
// the input sizes it was called with (graph-cost.ts). The browser benchmark
// divides these by a backend's measured throughput for a FLOP-bound time.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { InferenceSession, Tensor } from 'onnxruntime-common';
import { graphCost } from '../engine/graph-cost';
import { openGenerator, readGeneratorManifest } from '../engine/generators';
import { directorySource, nodeHost } from '../engine/node-host';
import { Mulberry32 } from '../engine/rng';
import type { RuntimeHost } from '../engine/runtime';
import type { Family } from '../engine/sampling';

/** The progress stage each generator graph runs in. */
const STAGE_OF = { encoder: 'encode', denoiser: 'denoise', decoder: 'decode' } as const;
type GraphName = keyof typeof STAGE_OF;

export interface StageCost {
  stage: (typeof STAGE_OF)[GraphName];
  graph: GraphName;
  calls: number;
  /** Multiply-adds of all calls (a graph called at several input sizes is counted at each). */
  multiplyAdds: number;
  /** Counted operators' share, by operator; operators with arithmetic not counted, if any. */
  byOp: Record<string, number>;
  uncounted: string[];
}

interface Recorded {
  graph: GraphName;
  /** Calls by input sizes, with the first call's inputs at those sizes. */
  bySizes: Map<string, { calls: number; feeds: Record<string, Tensor> }>;
}

/** `nodeHost` whose sessions of the named graphs record each call's inputs. */
function recordingHost(graphs: Map<GraphName, Uint8Array>, recorded: Recorded[]): RuntimeHost {
  const same = (a: Uint8Array, b: Uint8Array) =>
    a.length === b.length && a.every((v, i) => v === b[i]);
  return {
    ...nodeHost,
    ort: {
      ...nodeHost.ort,
      InferenceSession: {
        create: async (model, options) => {
          const session = await nodeHost.ort.InferenceSession.create(model, options);
          const graph = [...graphs].find(([, bytes]) => same(bytes, model))?.[0];
          if (graph === undefined) return session;
          const record: Recorded = { graph, bySizes: new Map() };
          recorded.push(record);
          const run = session.run.bind(session) as (
            feeds: Record<string, Tensor>,
          ) => ReturnType<InferenceSession['run']>;
          return new Proxy(session, {
            get: (target, key, receiver) =>
              key === 'run'
                ? (feeds: Record<string, Tensor>) => {
                    const sizes = JSON.stringify(
                      Object.entries(feeds).map(([name, t]) => [name, t.dims]),
                    );
                    const entry = record.bySizes.get(sizes) ?? { calls: 0, feeds };
                    entry.calls++;
                    record.bySizes.set(sizes, entry);
                    return run(feeds);
                  }
                : Reflect.get(target, key, receiver),
          });
        },
      },
    },
  };
}

/**
 * Generates `samples` networks with `steps` DDIM steps for `classes` classes of
 * `images` support images each (random features: sizes are what count), and
 * returns the multiply-adds of each stage.
 */
export async function generationCost(
  family: Family,
  releaseDir: string,
  sizes: { classes: number; images: number; samples: number; steps: number },
): Promise<StageCost[]> {
  const source = directorySource(releaseDir);
  const manifest = await readGeneratorManifest(family, source);
  const graphs = new Map<GraphName, Uint8Array>();
  for (const name of Object.keys(STAGE_OF) as GraphName[])
    graphs.set(name, new Uint8Array(await readFile(join(releaseDir, manifest.graphs[name].file))));
  const recorded: Recorded[] = [];
  const generator = await openGenerator(family, source, recordingHost(graphs, recorded), {
    backend: 'cpu',
  });
  try {
    const rng = new Mulberry32(5);
    const dim = manifest.backbone.feature_dim;
    const support = Array.from({ length: sizes.classes }, () =>
      Float32Array.from({ length: sizes.images * dim }, () => rng.normal()),
    );
    await generator.generate(support, { samples: sizes.samples, steps: sizes.steps, seed: 0 });
  } finally {
    await generator.release();
  }
  const costs: StageCost[] = [];
  for (const graph of Object.keys(STAGE_OF) as GraphName[]) {
    const cost: StageCost = {
      stage: STAGE_OF[graph],
      graph,
      calls: 0,
      multiplyAdds: 0,
      byOp: {},
      uncounted: [],
    };
    for (const record of recorded.filter((r) => r.graph === graph))
      for (const { calls, feeds } of record.bySizes.values()) {
        const one = await graphCost(nodeHost.ort, graphs.get(graph)!, feeds);
        cost.calls += calls;
        cost.multiplyAdds += calls * one.multiplyAdds;
        for (const [op, macs] of Object.entries(one.byOp))
          cost.byOp[op] = (cost.byOp[op] ?? 0) + calls * macs;
        for (const op of one.uncounted) if (!cost.uncounted.includes(op)) cost.uncounted.push(op);
      }
    costs.push(cost);
  }
  return costs;
}
