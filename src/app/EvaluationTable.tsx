import type { Evaluation, Spread } from '../engine/evaluation';

export interface Row {
  id: string;
  label: string;
  accuracy: number;
  spread?: Spread;
  note?: string;
  /** Time the method took here, where it trained in the page. */
  ms?: number;
}

export function rows(e: Evaluation): Row[] {
  const what = e.family === 'head' ? 'heads' : `${e.arch} CNNs`;
  const out: Row[] = [
    {
      id: 'generated',
      label: `generated (${e.generated.count} ${what}, mean)`,
      accuracy: e.generated.mean,
      spread: e.generated,
    },
  ];
  if (e.generatedRefined)
    out.push({
      id: 'generated-refined',
      label: 'generated + refined on your images',
      accuracy: e.generatedRefined.mean,
      spread: e.generatedRefined,
      note:
        `λ = ${e.generatedRefined.lambda}, ` +
        (e.generatedRefined.rule === 'cross-validation'
          ? 'by cross-validation'
          : `calibrated for ${e.generatedRefined.minImages} image${e.generatedRefined.minImages === 1 ? '' : 's'} a class`),
    });
  if (e.pretrained)
    out.push({
      id: 'pretrained',
      label: 'pretrained',
      accuracy: e.pretrained.accuracy,
      note: `${e.pretrained.kind}: ${e.pretrained.source}`,
    });
  out.push(
    {
      id: 'logistic-regression',
      label: 'logistic regression trained here (backbone features)',
      accuracy: e.logisticRegression.accuracy,
      note: `C = ${e.logisticRegression.c}`,
    },
    ...(e.trainedHead
      ? [
          {
            id: 'trained-head',
            label: 'head trained here with tfjs (Teachable-Machine style)',
            accuracy: e.trainedHead.accuracy,
            note: `${e.trainedHead.epochs} Adam epochs in ${e.trainedHead.trainMs.toFixed(0)} ms`,
            ms: e.trainedHead.trainMs,
          },
        ]
      : []),
    {
      id: 'nearest-class-mean',
      label: 'nearest class mean (backbone features)',
      accuracy: e.nearestClassMean,
    },
  );
  const p = e.withPrototypeLastLayer;
  if (p)
    out.push(
      {
        id: 'generated-prototypes',
        label: 'generated bodies, class-mean last layer',
        accuracy: p.generated.mean,
        spread: p.generated,
      },
      {
        id: 'pretrained-prototypes',
        label: 'pretrained (nearest zoo checkpoint), class-mean last layer',
        accuracy: p.pretrained.accuracy,
        note: p.pretrained.task,
      },
    );
  out.push({
    id: 'random-init',
    label: `random init (${e.randomInit.count} ${what}, mean)`,
    accuracy: e.randomInit.mean,
    spread: e.randomInit,
  });
  return out;
}

export const percent = (x: number) => `${(100 * x).toFixed(1)}%`;

/** Held-out accuracy of every method as text (the chart above draws the same rows). */
export function EvaluationTable({ evaluation }: { evaluation: Evaluation }) {
  const queries = evaluation.queryImages.reduce((a, b) => a + b, 0);
  return (
    <table data-testid="evaluation-table" className="evaluation">
      <caption>
        Accuracy on {queries} held-out images ({evaluation.classes.length} classes; trained on{' '}
        {evaluation.supportImages.reduce((a, b) => a + b, 0)} images)
      </caption>
      <thead>
        <tr>
          <th scope="col">weights</th>
          <th scope="col">accuracy</th>
        </tr>
      </thead>
      <tbody>
        {rows(evaluation).map((row) => (
          <tr
            key={row.id}
            data-testid={`evaluation-${row.id}`}
            data-accuracy={row.accuracy}
            {...(row.ms !== undefined ? { 'data-ms': row.ms } : {})}
          >
            <th scope="row">
              {row.label}
              {row.note !== undefined && <small> ({row.note})</small>}
            </th>
            <td>
              {percent(row.accuracy)}
              {row.spread !== undefined && row.spread.count > 1 && (
                <small>
                  {' '}
                  ± {percent(row.spread.std)} (samples: {row.spread.values.map(percent).join(', ')})
                </small>
              )}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
