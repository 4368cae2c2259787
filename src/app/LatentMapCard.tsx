import { useEffect, useMemo, useRef } from 'react';
import { placeSamples, project } from '../engine/latent-map';
import type { GenerateResult } from '../worker/protocol';
import { useAppStore } from './context';

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
};

/**
 * The generated samples among the generator's training targets (one per zoo
 * task: the reference head of its whole train split): each class row's latent
 * projected on the release's 2-D PCA of training latents, and its distance to
 * the nearest training latent on their own neighbour scale (0: a copy; about 1
 * or more: as far from them as they are from each other).
 */
export function LatentMapCard({ result }: { result: GenerateResult }) {
  const state = useAppStore((s) => s.latentMap);
  const load = useAppStore((s) => s.loadLatentMap);
  const holder = useRef<HTMLDivElement>(null);
  useEffect(() => void load(), [load]);
  const map = state.status === 'ready' ? state.map : null;
  const points = useMemo(
    () =>
      map === null || result.latents === null
        ? []
        : placeSamples(map, result.latents.data, result.latents.dim, result.classes.length),
    [map, result],
  );
  useEffect(() => {
    if (map === null || points.length === 0) return;
    let live = true;
    void import('@observablehq/plot').then((Plot) => {
      const zoo = map.latents.map((latent) => project(map, latent));
      const chart = Plot.plot({
        width: 560,
        height: 420,
        x: { label: 'PC 1 →' },
        y: { label: '↑ PC 2' },
        color: { legend: true, type: 'ordinal', label: 'sample' },
        ariaLabel: 'Generated latents among the training latents, on two principal components',
        ariaDescription: `${zoo.length} training latents in grey; ${points.length} generated class rows in colour.`,
        marks: [
          Plot.dot(zoo, {
            x: (d: number[]) => d[0],
            y: (d: number[]) => d[1],
            r: 1.5,
            fill: '#c3c9cf',
          }),
          Plot.dot(points, {
            x: 'x',
            y: 'y',
            r: 4,
            stroke: (p: (typeof points)[number]) => `sample ${p.sample}`,
            title: (p: (typeof points)[number]) =>
              `sample ${p.sample}, ${result.classes[p.row]}: nearest training latent at ${p.novelty.toFixed(2)}× their neighbour distance`,
          }),
        ],
      });
      if (live) holder.current?.replaceChildren(chart);
    });
    return () => {
      live = false;
    };
  }, [map, points, result.classes]);
  if (result.latents === null) return null;
  const samples = [...new Set(points.map((p) => p.sample))];
  return (
    <details className="latent-map" data-testid="latent-map">
      <summary>
        Latent map: are the samples new, or copies of what the generator was trained on?
      </summary>
      {state.status === 'loading' && <p role="status">Reading the training latents…</p>}
      {state.status === 'absent' && <p>This release ships no latent map.</p>}
      {state.status === 'error' && (
        <p className="error">The latent map could not be read: {state.message}</p>
      )}
      {map !== null && (
        <>
          <p>
            Each dot is the latent of one class row: the residual over the head computed from the
            images, in the generator&apos;s coordinates. Grey, {map.latents.length} rows of the
            generator&apos;s training targets (for each zoo task, the head its whole train split
            gives); coloured, your samples. The two axes hold{' '}
            {(100 * (map.explained_variance[0]! + map.explained_variance[1]!)).toFixed(0)}% of the
            training latents&apos; variance. Distance to the nearest training latent is measured in
            the full space, on their own scale: 0 is a copy; 1 is as far as training rows are from
            each other.
          </p>
          <div ref={holder} data-testid="latent-map-chart" />
          <ul data-testid="latent-novelty">
            {samples.map((s) => (
              <li key={s}>
                sample {s}: median distance to the nearest training latent{' '}
                {median(points.filter((p) => p.sample === s).map((p) => p.novelty)).toFixed(2)}×
              </li>
            ))}
          </ul>
        </>
      )}
    </details>
  );
}
