import { useAppStore } from './context';

/** "Try a demo dataset": the demos shipped with the app, one click each to a comparison. */
export function DemoChooser({ disabled }: { disabled: boolean }) {
  const demos = useAppStore((s) => s.demos);
  const choose = useAppStore((s) => s.chooseDemo);
  const active = useAppStore((s) => s.activeDemo);
  return (
    <div className="choice demo-chooser" data-testid="demo-chooser">
      <h3>Try a demo dataset</h3>
      {demos.status === 'loading' && <p role="status">Reading the demos…</p>}
      {demos.status === 'error' && (
        <p className="error">The demo datasets could not be read: {demos.message}</p>
      )}
      {demos.status === 'ready' && (
        <ul>
          {demos.index.demos.map((demo) => (
            <li key={demo.id}>
              <button
                data-testid={`demo-${demo.id}`}
                disabled={disabled}
                aria-pressed={active?.id === demo.id}
                onClick={() => void choose(demo.id)}
              >
                {demo.title}
              </button>{' '}
              <small>
                {demo.side === 'seen' ? 'seen in training' : 'never seen in training'};{' '}
                {demo.classes.length} classes. {demo.description}
              </small>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
