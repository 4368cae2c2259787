import { STAGE_LABELS, STAGES, type Progress, type ProgressStage } from '../engine/progress';

/** The stages a generation passes, in order (progress.ts STAGES). */
const GENERATION: readonly ProgressStage[] = [
  'load-generator',
  'load-backbone',
  'features',
  'encode',
  'denoise',
  'decode',
  'refine',
  'export',
  'evaluate',
];

/**
 * One bar per stage: stages before the current one are full, the current one
 * shows its units, later ones are empty. Progress events come in STAGES order
 * with rising units (tested in pipeline.test.ts), so no bar ever goes back.
 */
export function StageBars({ progress }: { progress: Progress }) {
  const at = STAGES.indexOf(progress.stage);
  return (
    <ol className="stage-bars" data-testid="stage-bars">
      {GENERATION.map((stage) => {
        const order = STAGES.indexOf(stage);
        const value = order < at ? 1 : order > at ? 0 : progress.done / Math.max(progress.total, 1);
        return (
          <li key={stage} data-stage={stage} data-value={value.toFixed(3)}>
            <label>
              {STAGE_LABELS[stage]} <progress max={1} value={value} />
            </label>
          </li>
        );
      })}
    </ol>
  );
}
