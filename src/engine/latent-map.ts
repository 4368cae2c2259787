// The latent map: where each generated sample's latents (one per class row) lie
// among the generator's training latents ("zoo latents" below: one per zoo task,
// the reference head of its whole train split), in the 2-D PCA the factory
// computed (models/d2nwg/latent_map.py), and how far each is from its nearest
// one in the full latent space, against their own nearest-neighbour distances:
// a sample on top of one is a copy, one far from all is new.

import { readVerified, type FileSource } from './files';
import { array, integer, number, object, parse, string } from './schema';

export const latentMapSchema = object({
  description: string,
  rebuild_command: string,
  inputs: object({
    zoo_table_sha256: string,
    tasks: integer,
    encoded_tokens: integer,
    seed: integer,
  }),
  mean: array(number),
  components: array(array(number)),
  explained_variance: array(number),
  latents: array(array(number)),
  nearest_zoo_distance_median: number,
});
export type LatentMap = ReturnType<typeof latentMapSchema>;

export async function readLatentMap(
  source: FileSource,
  entry: { file: string; sha256: string; bytes: number },
): Promise<LatentMap> {
  const bytes = await readVerified(source, entry.file, entry);
  return parse(latentMapSchema, JSON.parse(new TextDecoder().decode(bytes)), entry.file);
}

/** (x, y) of a latent in the map's plane. */
export function project(map: LatentMap, latent: ArrayLike<number>): [number, number] {
  const [a, b] = map.components as [number[], number[]];
  let x = 0;
  let y = 0;
  map.mean.forEach((m, k) => {
    const v = latent[k]! - m;
    x += v * a[k]!;
    y += v * b[k]!;
  });
  return [x, y];
}

/** Euclidean distance from a latent to the nearest zoo latent of the map. */
export function nearestZooDistance(map: LatentMap, latent: ArrayLike<number>): number {
  let best = Infinity;
  for (const zoo of map.latents) {
    let d = 0;
    for (let k = 0; k < zoo.length; k++) d += (latent[k]! - zoo[k]!) ** 2;
    if (d < best) best = d;
  }
  return Math.sqrt(best);
}

export interface SamplePoint {
  sample: number;
  row: number;
  x: number;
  y: number;
  /** Distance to the nearest zoo latent ÷ the zoo's median nearest-neighbour distance. */
  novelty: number;
}

/** Every row of every sample ([samples × rows × dim] latents) placed on the map. */
export function placeSamples(
  map: LatentMap,
  latents: Float32Array,
  dim: number,
  rows: number,
): SamplePoint[] {
  const out: SamplePoint[] = [];
  for (let i = 0; i * dim < latents.length; i++) {
    const latent = latents.subarray(i * dim, (i + 1) * dim);
    const [x, y] = project(map, latent);
    out.push({
      sample: Math.floor(i / rows),
      row: i % rows,
      x,
      y,
      novelty: nearestZooDistance(map, latent) / map.nearest_zoo_distance_median,
    });
  }
  return out;
}
