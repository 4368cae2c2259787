import { useEffect, useMemo } from 'react';
import type { Evaluation } from '../engine/evaluation';

const MAX_THUMBNAILS = 60;

/** The best generated sample on the held-out images: a confusion matrix and each image's prediction. */
export function BestSample({
  evaluation,
  files,
}: {
  evaluation: Evaluation;
  /** The held-out files by the name the worker was sent ("class/file.png"). */
  files: ReadonlyMap<string, File>;
}) {
  const { best, classes } = evaluation;
  const counts = classes.map((_, truth) =>
    classes.map(
      (_, predicted) =>
        best.images.filter((i) => i.truth === truth && i.predicted === predicted).length,
    ),
  );
  const shown = useMemo(() => best.images.slice(0, MAX_THUMBNAILS), [best.images]);
  const urls = useMemo(
    () =>
      shown.map((image) => {
        const file = image.name === null ? undefined : files.get(image.name);
        return file === undefined ? null : URL.createObjectURL(file);
      }),
    [shown, files],
  );
  useEffect(() => () => urls.forEach((u) => u !== null && URL.revokeObjectURL(u)), [urls]);
  return (
    <section data-testid="best-sample" aria-label="Best generated sample">
      <h3>
        Best sample ({best.sample}): {(100 * best.accuracy).toFixed(1)}% on the held-out images
      </h3>
      <table data-testid="confusion-matrix" className="confusion">
        <caption>Confusion matrix: rows are the true classes, columns the predicted ones</caption>
        <thead>
          <tr>
            <th scope="col">true \ predicted</th>
            {classes.map((c) => (
              <th key={c} scope="col">
                {c}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {counts.map((row, truth) => (
            <tr key={classes[truth]}>
              <th scope="row">{classes[truth]}</th>
              {row.map((n, predicted) => (
                <td
                  key={predicted}
                  className={truth === predicted ? 'diagonal' : n > 0 ? 'miss' : ''}
                >
                  {n}
                </td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
      <ul className="thumbnails" data-testid="predictions">
        {shown.map((image, i) => (
          <li key={i} className={image.truth === image.predicted ? 'right' : 'wrong'}>
            {urls[i] !== null && (
              <img src={urls[i]!} alt={image.name ?? ''} width={64} height={64} />
            )}
            <span>
              {classes[image.predicted]}
              {image.truth !== image.predicted && ` (is ${classes[image.truth]})`}
            </span>
          </li>
        ))}
      </ul>
      {best.images.length > shown.length && (
        <p>
          {shown.length} of {best.images.length} held-out images shown.
        </p>
      )}
    </section>
  );
}
