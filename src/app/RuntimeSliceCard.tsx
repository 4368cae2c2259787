import { describeBackend } from '../engine/runtime';
import { useAppStore } from './context';
import { describeProgress } from '../engine/progress';

export function RuntimeSliceCard() {
  const sliceRun = useAppStore((s) => s.sliceRun);
  const runSlice = useAppStore((s) => s.runSlice);

  return (
    <section className="card" aria-labelledby="slice-title">
      <h2 id="slice-title">Runtime check</h2>
      <p>
        A tiny network exported by the model factory runs in a worker and is compared with the
        output PyTorch recorded for the same input.
      </p>
      <button onClick={() => void runSlice()} disabled={sliceRun.status === 'running'}>
        Run again
      </button>
      <div data-testid="slice-status" data-status={sliceRun.status} role="status">
        {sliceRun.status === 'idle' && 'Not run yet.'}
        {sliceRun.status === 'running' &&
          `Running on ${sliceRun.backend}: ${describeProgress(sliceRun.progress)}…`}
        {sliceRun.status === 'error' && (
          <p className="error" data-testid="slice-error">
            Could not run on {sliceRun.backend}: {sliceRun.message}
          </p>
        )}
        {sliceRun.status === 'done' && (
          <dl>
            <dt>Backend that ran</dt>
            <dd data-testid="slice-backend" data-backend={sliceRun.result.backend}>
              {describeBackend(sliceRun.result)}
            </dd>
            <dt>Largest difference from PyTorch</dt>
            <dd data-testid="slice-error-max">
              {sliceRun.result.maxAbsError.toExponential(2)} (tolerance{' '}
              {sliceRun.result.tolerance.toExponential(0)}){' '}
              <strong data-testid="slice-verdict">
                {sliceRun.result.passed ? 'match' : 'MISMATCH'}
              </strong>
            </dd>
            <dt>Timings</dt>
            <dd>
              session {sliceRun.result.sessionMs.toFixed(0)} ms, run{' '}
              {sliceRun.result.runMs.toFixed(1)} ms
            </dd>
            <dt>Output [{sliceRun.result.shape.join(' × ')}]</dt>
            <dd>
              <pre data-testid="slice-output">{JSON.stringify(sliceRun.result.output)}</pre>
            </dd>
          </dl>
        )}
      </div>
    </section>
  );
}
