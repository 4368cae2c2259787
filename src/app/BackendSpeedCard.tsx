import { describeVerdict } from '../engine/backend-probe';
import { useAppStore } from './context';

/** Diagnostics: which backend auto takes here and why, and every backend timed in this page. */
export function BackendSpeedCard() {
  const run = useAppStore((s) => s.speedRun);
  const measure = useAppStore((s) => s.measureBackends);
  return (
    <section className="card" aria-labelledby="speed-title">
      <h2 id="speed-title">Backend speed</h2>
      <p>
        Where it cannot tell from the WebGPU adapter, auto times a small graph shaped like a
        denoiser step on each backend once, takes the faster and remembers it in this browser
        (&ldquo;Clear cached models&rdquo; forgets it). This measures every backend again, with a
        large MatMul for its arithmetic speed.
      </p>
      <button
        data-testid="measure-backends"
        onClick={() => void measure()}
        disabled={run.status === 'running'}
      >
        Measure backends
      </button>
      <div data-testid="speed-status" data-status={run.status} role="status">
        {run.status === 'running' && 'Timing each backend…'}
        {run.status === 'error' && <p className="error">{run.message}</p>}
        {run.status === 'done' && (
          <>
            <p>
              auto takes <span data-testid="speed-auto">{run.result.auto}</span>.
            </p>
            {run.result.verdict !== null && (
              <p data-testid="speed-verdict" data-winner={run.result.verdict.winner}>
                {describeVerdict(run.result.verdict)}; the probe took{' '}
                {run.result.verdict.probeMs.toFixed(0)} ms.
              </p>
            )}
            <table data-testid="speed-table">
              <thead>
                <tr>
                  <th>backend</th>
                  <th>probe, ms a run</th>
                  <th>large MatMul, GFLOP/s</th>
                </tr>
              </thead>
              <tbody>
                {run.result.speeds.map((s) => (
                  <tr
                    key={s.backend}
                    data-testid={`speed-${s.backend}`}
                    data-probe-ms={s.probeMsPerRun}
                    data-gflops={s.matmulGflops}
                  >
                    <th>{s.backend}</th>
                    <td>{s.probeMsPerRun?.toFixed(2) ?? '–'}</td>
                    <td>
                      {s.matmulGflops?.toFixed(1) ?? '–'}
                      {s.error !== undefined && <span className="error"> {s.error}</span>}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </>
        )}
      </div>
    </section>
  );
}
