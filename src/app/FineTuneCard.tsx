import { useEffect, useRef } from 'react';
import { FINE_TUNING } from '../engine/fine-tune';
import { describeProgress } from '../engine/progress';
import { useAppStore } from './context';
import { percent } from './EvaluationTable';

const COLOURS: Record<string, string> = {
  generated: '#3b6fb6',
  'generated + refined': '#17365f',
  pretrained: '#c06a00',
  'random init': '#8a949e',
};

/**
 * Fine-tuning in the page: each start (generated, refined, pretrained where
 * there is one, random init) trained on the support with tfjs, its held-out
 * accuracy drawn after every epoch as the worker reports it.
 */
export function FineTuneCard() {
  const run = useAppStore((s) => s.fineTuneRun);
  const curves = useAppStore((s) => s.fineTuneCurves);
  const fineTune = useAppStore((s) => s.fineTune);
  const cancel = useAppStore((s) => s.cancelGenerate);
  const holder = useRef<HTMLDivElement>(null);
  const names = Object.keys(curves);
  useEffect(() => {
    if (names.length === 0) {
      holder.current?.replaceChildren();
      return;
    }
    let live = true;
    void import('@observablehq/plot').then((Plot) => {
      const points = Object.entries(curves).flatMap(([series, values]) =>
        values.map((accuracy, epoch) => ({ series, epoch, accuracy })),
      );
      const chart = Plot.plot({
        width: 640,
        height: 300,
        x: { domain: [0, FINE_TUNING.epochs], label: 'epochs of fine-tuning →' },
        y: { domain: [0, 100], percent: true, grid: true, label: '↑ held-out accuracy (%)' },
        color: {
          domain: Object.keys(curves),
          range: Object.keys(curves).map((k) => COLOURS[k] ?? '#555'),
          legend: true,
        },
        ariaLabel: 'Held-out accuracy per epoch of fine-tuning, from each start',
        marks: [
          Plot.line(points, { x: 'epoch', y: 'accuracy', stroke: 'series' }),
          Plot.dot(points, {
            x: 'epoch',
            y: 'accuracy',
            fill: 'series',
            r: 3,
            title: (p: (typeof points)[number]) =>
              `${p.series}, epoch ${p.epoch}: ${percent(p.accuracy)}`,
          }),
        ],
      });
      if (live) holder.current?.replaceChildren(chart);
    });
    return () => {
      live = false;
    };
  }, [curves, names.length]);
  return (
    <section className="fine-tune" aria-labelledby="fine-tune-title" data-testid="fine-tune">
      <h3 id="fine-tune-title">Fine-tune in the page</h3>
      <p>
        Train every start on your images for {FINE_TUNING.epochs} epochs (full-batch Adam, learning
        rate {FINE_TUNING.learningRate}, as the factory&apos;s report does) and watch the held-out
        accuracy after each epoch.
      </p>
      {run.status === 'running' ? (
        <p role="status">
          <progress
            max={Math.max(run.progress.total, 1)}
            value={run.progress.done}
            data-testid="fine-tune-progress"
          />{' '}
          {describeProgress(run.progress)}
          {run.progress.backend !== undefined && ` on ${run.progress.backend}`}…{' '}
          <button onClick={cancel}>Cancel</button>
        </p>
      ) : (
        <button onClick={() => void fineTune()}>
          {run.status === 'done' ? 'Fine-tune again' : 'Fine-tune each start'}
        </button>
      )}
      {run.status === 'error' && <p role="alert">{run.message}</p>}
      <div ref={holder} data-testid="fine-tune-chart" />
      {names.length > 0 && (
        <table data-testid="fine-tune-table">
          <caption>Held-out accuracy before and after fine-tuning</caption>
          <thead>
            <tr>
              <th scope="col">start</th>
              <th scope="col">epoch 0</th>
              <th scope="col">epoch 1</th>
              <th scope="col">last epoch</th>
            </tr>
          </thead>
          <tbody>
            {Object.entries(curves).map(([name, values]) => (
              <tr key={name} data-testid={`fine-tune-${name}`} data-final={values.at(-1)}>
                <th scope="row">{name}</th>
                <td>{values[0] === undefined ? '…' : percent(values[0])}</td>
                <td>{values[1] === undefined ? '…' : percent(values[1])}</td>
                <td>
                  {percent(values.at(-1)!)} (epoch {values.length - 1})
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {run.status === 'done' && (
        <p>
          {run.result.curves.length} starts × {run.result.epochs} epochs on {run.result.backend} in{' '}
          {run.result.ms.toFixed(0)} ms.
        </p>
      )}
    </section>
  );
}
