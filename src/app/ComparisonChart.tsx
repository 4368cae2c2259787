import { useEffect, useRef, useState } from 'react';
import type { Evaluation } from '../engine/evaluation';
import { percent, rows } from './EvaluationTable';

/**
 * Held-out accuracy of every method as one bar chart (Observable Plot, SVG):
 * a bar for each method's mean, a line across ± one standard deviation where
 * there are several networks, and a dot per network. Each bar and dot
 * carries an SVG <title> with its number, and the figure a description; the
 * table beside it states every number as text. Plot is loaded when a first
 * chart is drawn, so the page's first load does not carry it.
 */
export function ComparisonChart({ evaluation }: { evaluation: Evaluation }) {
  const holder = useRef<HTMLDivElement>(null);
  const [failed, setFailed] = useState<string | null>(null);
  useEffect(() => {
    let live = true;
    void (async () => {
      try {
        const Plot = await import('@observablehq/plot');
        const data = rows(evaluation);
        const order = data.map((r) => r.label);
        const spreads = data.filter((r) => r.spread !== undefined && r.spread.count > 1);
        const dots = spreads.flatMap((r) =>
          r.spread!.values.map((value, sample) => ({ label: r.label, value, sample })),
        );
        const best = data.reduce((a, b) => (b.accuracy > a.accuracy ? b : a));
        const chart = Plot.plot({
          marginLeft: 330,
          width: 760,
          height: 40 + 34 * data.length,
          // percent: values are scaled by 100 before the domain applies.
          x: { domain: [0, 100], grid: true, percent: true, label: 'held-out accuracy (%)' },
          y: { domain: order, label: null },
          ariaLabel: 'Held-out accuracy of each method',
          ariaDescription:
            `${data.length} methods on ${evaluation.queryImages.reduce((a, b) => a + b, 0)} held-out images; ` +
            `best: ${best.label} at ${percent(best.accuracy)}.`,
          marks: [
            Plot.barX(data, {
              x: 'accuracy',
              y: 'label',
              fill: (r: { id: string }) => (r.id.startsWith('generated') ? '#3b6fb6' : '#9aa5b1'),
              title: (r: { label: string; accuracy: number }) =>
                `${r.label}: ${percent(r.accuracy)}`,
            }),
            Plot.ruleY(spreads, {
              y: 'label',
              x1: (r: (typeof spreads)[number]) => Math.max(0, r.spread!.mean - r.spread!.std),
              x2: (r: (typeof spreads)[number]) => Math.min(1, r.spread!.mean + r.spread!.std),
              stroke: '#1d2731',
              strokeWidth: 2,
            }),
            Plot.dot(dots, {
              x: 'value',
              y: 'label',
              r: 3,
              fill: 'white',
              stroke: '#1d2731',
              title: (d: (typeof dots)[number]) =>
                `${d.label}, sample ${d.sample}: ${percent(d.value)}`,
            }),
            Plot.ruleX([0]),
          ],
        });
        if (live) holder.current?.replaceChildren(chart);
      } catch (error) {
        if (live) setFailed(error instanceof Error ? error.message : String(error));
      }
    })();
    return () => {
      live = false;
    };
  }, [evaluation]);
  return (
    <figure className="comparison-chart" data-testid="comparison-chart">
      <div ref={holder} />
      {failed !== null && (
        <p role="alert">
          The chart could not be drawn ({failed}); the table below has every number.
        </p>
      )}
      <figcaption>
        Bars: mean held-out accuracy; black line: ± one standard deviation over the networks; dots:
        each network (every generated sample, every random initialisation).
      </figcaption>
    </figure>
  );
}
