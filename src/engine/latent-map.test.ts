import { describe, expect, it } from 'vitest';
import { nearestZooDistance, placeSamples, project, type LatentMap } from './latent-map';

const map: LatentMap = {
  description: 'test',
  rebuild_command: '-',
  inputs: { zoo_table_sha256: '-', tasks: 2, encoded_tokens: 3, seed: 0 },
  mean: [1, 0, 0],
  components: [
    [0, 1, 0],
    [0, 0, 1],
  ],
  explained_variance: [0.6, 0.3],
  latents: [
    [1, 0, 0],
    [1, 2, 0],
    [1, 0, 2],
  ],
  nearest_zoo_distance_median: 2,
};

describe('the latent map', () => {
  it('projects a latent onto the map’s two components around its mean', () => {
    expect(project(map, [4, 2, -3])).toEqual([2, -3]);
  });

  it('measures each sample row’s distance to the nearest zoo latent, on the zoo’s own scale', () => {
    expect(nearestZooDistance(map, [1, 2, 0])).toBe(0); // a copy of a zoo latent
    expect(nearestZooDistance(map, [1, 3, 0])).toBe(1);
    // 2 samples × 2 rows of 3-d latents: row-major [sample, row, dim].
    const points = placeSamples(map, Float32Array.from([1, 2, 0, 1, 0, 4, 5, 0, 0, 1, 1, 1]), 3, 2);
    expect(points.map((p) => [p.sample, p.row])).toEqual([
      [0, 0],
      [0, 1],
      [1, 0],
      [1, 1],
    ]);
    expect(points[0]!.novelty).toBe(0);
    expect(points[1]!.novelty).toBe(1); // 2 from [1, 0, 2], the zoo's median neighbour distance
    expect(points[2]!.novelty).toBe(2); // 4 from [1, 0, 0]
  });
});
