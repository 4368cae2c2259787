import { useState, type DragEvent } from 'react';
import type { Family } from '../engine/generators';
import { describeProgress, describeWork } from '../engine/progress';
import type { Precision } from '../engine/sampling';
import { describeRefinement } from '../engine/refine';
import { describeBackend } from '../engine/runtime';
import { encodeSafetensors } from '../engine/safetensors';
import type { GenerateResult } from '../worker/protocol';
import { useAppStore } from './context';
import { filesOfEntry, MIN_IMAGES_TO_HOLD_OUT, type PickedFile } from './dataset';
import { BestSample } from './BestSample';
import { ComparisonChart } from './ComparisonChart';
import { DemoChooser } from './DemoChooser';
import { EvaluationTable } from './EvaluationTable';
import { FineTuneCard } from './FineTuneCard';
import { LatentMapCard } from './LatentMapCard';
import { StageBars } from './StageBars';

/**
 * Downloads, one at a time: Chromium drops an anchor download that starts while
 * the previous one is still starting (30 of 100 quick clicks were lost), so
 * each file waits its turn, and its blob URL is revoked only well after.
 */
const downloads: { part: BlobPart; name: string; type: string }[] = [];
const DOWNLOAD_SPACING_MS = 200;
let downloading = false;

function startNextDownload(): void {
  const next = downloads.shift();
  if (next === undefined) {
    downloading = false;
    return;
  }
  downloading = true;
  const url = URL.createObjectURL(new Blob([next.part], { type: next.type }));
  const link = document.createElement('a');
  link.href = url;
  link.download = next.name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  setTimeout(startNextDownload, DOWNLOAD_SPACING_MS);
}

function save(bytes: Uint8Array | string, name: string, type = 'application/octet-stream'): void {
  const part = typeof bytes === 'string' ? bytes : new Uint8Array(bytes); // a copy on a plain ArrayBuffer
  downloads.push({ part, name, type });
  if (!downloading) startNextDownload();
}

/** A whole-number setting, clamped to at least `min`. */
function IntegerField(props: {
  label: string;
  testId: string;
  min: number;
  max?: number;
  value: number;
  onChange: (value: number) => void;
}) {
  return (
    <label>
      {props.label}{' '}
      <input
        type="number"
        min={props.min}
        max={props.max}
        data-testid={props.testId}
        value={props.value}
        onChange={(e) =>
          props.onChange(Math.max(props.min, Math.round(Number(e.target.value) || props.min)))
        }
      />
    </label>
  );
}

/** The files of a folder chosen in a file input, each with its path inside the folder. */
function pickedFolder(files: FileList | null): PickedFile[] {
  return Array.from(files ?? [], (file) => ({ file, path: file.webkitRelativePath || file.name }));
}

function plural(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}

const PRECISION_LABELS: Record<Precision, string> = {
  int8: 'int8 weights (smallest download)',
  fp16: 'fp16 weights',
  fp32: 'fp32',
};

/** Which weights the download buttons hand out: refined (the default) or plain generated. */
type Delivered = 'refined' | 'plain';

function metadata(
  result: GenerateResult,
  sample: number,
  delivered: Delivered,
): Record<string, string> {
  return {
    classes: JSON.stringify(result.classes),
    family: result.family,
    ...(result.arch ? { arch: result.arch } : {}),
    seed: String(result.options.seed),
    sample: String(sample),
    generator_release: result.releaseVersion,
    ...(result.refinement !== null
      ? { refined: delivered === 'refined' ? `yes, λ = ${result.refinement.lambda}` : 'no' }
      : {}),
  };
}

function modelCard(result: GenerateResult, delivered: Delivered): string {
  const what = result.family === 'head' ? 'classifier head' : `CNN ${result.arch}`;
  const which =
    result.refinement === null
      ? []
      : delivered === 'refined'
        ? [
            `These weights are **${describeRefinement(result.refinement)}**: each generated head was pulled ` +
              'toward the dropped images by a MAP refine (logistic regression whose prior mean is the generated head).',
            '',
          ]
        : ['These are the **plain generated** weights, not refined toward the images.', ''];
  return [
    `# Generated ${what}`,
    '',
    `Generated in the browser by D2NWG Web ${result.releaseVersion} for ${result.classes.length} classes ` +
      `(${result.imagesPerClass.join(', ')} images per class), seed ${result.options.seed}, ` +
      `${result.options.steps} DDIM steps, η ${result.options.eta}, guidance ${result.options.guidance}, ` +
      `temperature ${result.options.temperature}, on ${result.backend}.`,
    '',
    ...which,
    result.family === 'head'
      ? 'sample-<k>.onnx takes raw backbone features [N, F] (it L2-normalises them) and returns logits.'
      : 'sample-<k>.onnx takes images [N, 1, 28, 28]: grayscale in [0, 1], ink high, background 0.',
    '',
    '| output | class |',
    '|---|---|',
    ...result.classes.map((name, i) => `| ${i} | ${name} |`),
    '',
    'Accuracy: not measured here; run `d2nwg evaluate` on held-out images.',
    '',
  ].join('\n');
}

function CheckRow({ family }: { family: Family }) {
  const run = useAppStore((s) => s.checkRuns[family]);
  const check = useAppStore((s) => s.checkGenerator);
  return (
    <li>
      <button onClick={() => void check(family)} disabled={run.status === 'running'}>
        Check the {family} generator
      </button>{' '}
      <span data-testid={`check-${family}-status`} data-status={run.status} role="status">
        {run.status === 'running' && `${describeProgress(run.progress)}…`}
        {run.status === 'error' && <span className="error">{run.message}</span>}
        {run.status === 'done' && (
          <>
            on{' '}
            <span data-testid={`check-${family}-backend`} data-backend={run.result.backend}>
              {describeBackend(run.result)}
            </span>
            : largest relative difference from PyTorch{' '}
            <span data-testid={`check-${family}-error`}>
              {run.result.maxError.toExponential(2)}
            </span>{' '}
            (tolerance {run.result.tolerance.toExponential(0)}){' '}
            <strong data-testid={`check-${family}-verdict`}>
              {run.result.passed ? 'match' : 'MISMATCH'}
            </strong>
            , {run.result.generateMs.toFixed(0)} ms
          </>
        )}
      </span>
    </li>
  );
}

export function GenerateCard() {
  const dataset = useAppStore((s) => s.dataset);
  const problem = useAppStore((s) => s.datasetProblem);
  const settings = useAppStore((s) => s.generateSettings);
  const release = useAppStore((s) => s.release);
  const run = useAppStore((s) => s.generateRun);
  const setDataset = useAppStore((s) => s.setDataset);
  const setSettings = useAppStore((s) => s.setGenerateSettings);
  const generate = useAppStore((s) => s.generate);
  const cancel = useAppStore((s) => s.cancelGenerate);
  const reading = useAppStore((s) => s.readingDataset);
  const queryDataset = useAppStore((s) => s.queryDataset);
  const setQueryDataset = useAppStore((s) => s.setQueryDataset);
  const holdOut = useAppStore((s) => s.holdOut);
  const setHoldOut = useAppStore((s) => s.setHoldOut);
  const [dragging, setDragging] = useState(false);
  const busy = run.status === 'running';

  const onDrop = async (event: DragEvent) => {
    event.preventDefault();
    setDragging(false);
    const entries = Array.from(event.dataTransfer.items)
      .map((item) => item.webkitGetAsEntry())
      .filter((e) => e !== null);
    const files: PickedFile[] = [];
    for (const entry of entries) files.push(...(await filesOfEntry(entry as never)));
    // A dropped folder's paths start with its own name, and a zip is unpacked under its own
    // name; dropped class folders get a common root.
    const single = entries.length === 1 && entries[0]!.isDirectory;
    const zips = entries.every((e) => e.isFile && e.name.toLowerCase().endsWith('.zip'));
    void setDataset(
      single || zips ? files : files.map((f) => ({ ...f, path: `dropped/${f.path}` })),
    );
  };

  return (
    <section
      className={`card${dragging ? ' dragging' : ''}`}
      aria-labelledby="generate-title"
      onDragOver={(e) => {
        e.preventDefault();
        setDragging(true);
      }}
      onDragLeave={() => setDragging(false)}
      onDrop={(e) => void onDrop(e)}
    >
      <h2 id="generate-title">Generate weights for your dataset</h2>
      <DemoChooser disabled={busy || reading} />
      <div className="drop-zone choice" data-testid="drop-zone" data-dragging={dragging}>
        <h3>Use your own images</h3>
        <p>
          <strong>Drop a folder or a .zip here</strong>, or choose one: one sub-folder of images per
          class. The images stay in this page.
        </p>
        <label>
          Folder{' '}
          <input
            type="file"
            multiple
            aria-label="Dataset folder"
            data-testid="dataset-input"
            disabled={busy}
            {...{ webkitdirectory: '' }}
            onChange={(e) => void setDataset(pickedFolder(e.target.files))}
          />
        </label>{' '}
        <label>
          Zip{' '}
          <input
            type="file"
            accept=".zip,application/zip"
            aria-label="Dataset zip"
            data-testid="zip-input"
            disabled={busy}
            onChange={(e) =>
              void setDataset(
                Array.from(e.target.files ?? [], (file) => ({ file, path: file.name })),
              )
            }
          />
        </label>
      </div>
      {reading && <p role="status">Reading the chosen files…</p>}
      {dataset === null && problem !== null && (
        <p className="error" data-testid="dataset-problem">
          {problem}
        </p>
      )}
      {dataset !== null && (
        <div data-testid="dataset-summary">
          {dataset.classes.length > 0 && (
            <p>
              {plural(dataset.classes.length, 'class', 'classes')}:{' '}
              {dataset.classes.map((c) => `${c.name} (${c.files.length})`).join(', ')}
            </p>
          )}
          {dataset.nestedFolders.length > 0 && (
            <p data-testid="dataset-nested">
              Folders inside class folders are not classes, and their images are not used:{' '}
              {dataset.nestedFolders.join(', ')}.
            </p>
          )}
          {dataset.skipped.length > 0 && (
            <details>
              <summary>{plural(dataset.skipped.length, 'file', 'files')} left out</summary>
              <ul>
                {dataset.skipped.map((s) => (
                  <li key={s}>{s}</li>
                ))}
              </ul>
            </details>
          )}
          {problem !== null && (
            <p className="error" data-testid="dataset-problem">
              {problem}
            </p>
          )}
        </div>
      )}
      {release.status === 'loading' && <p role="status">Reading the release…</p>}
      {release.status === 'error' && (
        <p className="error" data-testid="release-error">
          The release could not be read: {release.message}
        </p>
      )}
      {settings !== null && release.status === 'ready' && (
        <fieldset disabled={busy}>
          <label>
            Family{' '}
            <select
              data-testid="family-select"
              value={settings.family}
              onChange={(e) => setSettings({ family: e.target.value as Family })}
            >
              <option value="head">head: a classifier on the frozen backbone</option>
              <option value="cnn">cnn: every weight of a small CNN (28×28 grayscale)</option>
            </select>
          </label>{' '}
          {settings.family === 'cnn' && (
            <label>
              Architecture{' '}
              <select
                data-testid="arch-select"
                value={settings.arch}
                onChange={(e) => setSettings({ arch: e.target.value })}
              >
                {release.info.cnn.archs.map((a) => (
                  <option key={a.name} value={a.name}>
                    {a.name} ({a.parameters.toLocaleString('en')} weights at 10 classes)
                  </option>
                ))}
              </select>
            </label>
          )}{' '}
          <IntegerField
            label="Samples"
            testId="samples-input"
            min={1}
            max={32}
            value={settings.samples}
            onChange={(samples) => setSettings({ samples })}
          />{' '}
          <IntegerField
            label="DDIM steps"
            testId="steps-input"
            min={1}
            max={1000}
            value={settings.steps}
            onChange={(steps) => setSettings({ steps })}
          />{' '}
          <label>
            Graphs{' '}
            <select
              data-testid="precision-select"
              value={settings.precision}
              onChange={(e) => setSettings({ precision: e.target.value as Precision })}
            >
              {(['int8', 'fp16', 'fp32'] as const)
                .filter((p) => release.info[settings.family].precisions.includes(p))
                .map((p) => (
                  <option key={p} value={p}>
                    {PRECISION_LABELS[p]}
                  </option>
                ))}
            </select>
          </label>{' '}
          <label>
            <input
              type="checkbox"
              data-testid="holdout-checkbox"
              checked={holdOut}
              onChange={(e) => setHoldOut(e.target.checked)}
            />{' '}
            Hold out every third image of each class to measure accuracy (needs{' '}
            {MIN_IMAGES_TO_HOLD_OUT} images a class)
          </label>{' '}
          <label>
            or a held-out folder{' '}
            <input
              type="file"
              multiple
              aria-label="Held-out folder"
              data-testid="query-input"
              {...{ webkitdirectory: '' }}
              onChange={(e) => void setQueryDataset(pickedFolder(e.target.files))}
            />
          </label>
          {queryDataset !== null && (
            <span data-testid="query-summary">
              {' '}
              held out:{' '}
              {queryDataset.classes.map((c) => `${c.name} (${c.files.length})`).join(', ')}
            </span>
          )}{' '}
          <IntegerField
            label="Seed"
            testId="seed-input"
            min={0}
            value={settings.seed}
            onChange={(seed) => setSettings({ seed })}
          />
        </fieldset>
      )}
      <button
        data-testid="generate-button"
        onClick={() => void generate()}
        disabled={busy || reading || dataset === null || problem !== null || settings === null}
      >
        Generate
      </button>{' '}
      {busy && (
        <button data-testid="cancel-button" onClick={cancel}>
          Cancel
        </button>
      )}
      <div data-testid="generate-status" data-status={run.status} role="status">
        {run.status === 'running' && (
          <>
            <span data-testid="generate-progress">{describeWork(run.backend, run.progress)}</span>
            <StageBars progress={run.progress} />
          </>
        )}
        {run.status === 'error' && (
          <p className="error" data-testid="generate-error">
            {run.message}
          </p>
        )}
        {run.status === 'done' && <Result result={run.result} />}
      </div>
    </section>
  );
}

/** Replays each family's factory trace on the chosen backend (a diagnostic). */
export function GeneratorChecksCard() {
  return (
    <section className="card" aria-labelledby="checks-title">
      <h2 id="checks-title">Agreement with the factory</h2>
      <p>
        Replays the factory&apos;s recorded generation (same inputs, same seed) on the backend
        above.
      </p>
      <ul>
        <CheckRow family="head" />
        <CheckRow family="cnn" />
      </ul>
    </section>
  );
}

function Result({ result }: { result: GenerateResult }) {
  const heldOutFiles = useAppStore((s) => s.heldOutFiles);
  const [delivered, setDelivered] = useState<Delivered>('refined');
  const plain = result.refinement === null || delivered === 'plain';
  const networks = plain ? result.generated : result.networks;
  const onnx = plain ? result.generatedOnnx : result.onnx;
  const exportClassifier = useAppStore((s) => s.exportClassifier);
  const [exporting, setExporting] = useState<string | null>(null);
  const [exportError, setExportError] = useState<string | null>(null);
  const downloadClassifier = async (sample: number, format: 'tfjs' | 'onnx') => {
    const net = networks[sample]!;
    setExporting(`${format}-${sample}`);
    setExportError(null);
    try {
      const which =
        result.refinement === null || plain
          ? 'plain generated head'
          : describeRefinement(result.refinement);
      const zip = await exportClassifier({
        format,
        weight: net.weight!.data,
        bias: net.bias!.data,
        classes: result.classes,
        about: `Sample ${sample} of D2NWG Web ${result.releaseVersion}, seed ${result.options.seed}: ${which}.`,
      });
      save(
        zip,
        format === 'onnx'
          ? `classifier-sample-${sample}-onnx.zip`
          : `classifier-sample-${sample}.zip`,
        'application/zip',
      );
    } catch (error) {
      setExportError((error as Error).message);
    } finally {
      setExporting(null);
    }
  };
  const t = result.timingsMs;
  const what = result.family === 'head' ? 'heads' : `${result.arch} CNNs`;
  return (
    <>
      <p data-testid="generate-timings" data-timings={JSON.stringify(result.timingsMs)}>
        {result.networks.length} {what} for {result.classes.length} classes, generated with{' '}
        <span data-testid="generate-precision">{result.precision}</span> graphs on{' '}
        <span data-testid="generate-backend" data-backend={result.backend}>
          {describeBackend(result)}
        </span>{' '}
        (features on {result.featureBackend ?? 'given'}): features {t.features.toFixed(0)} ms,
        encoder {t.encode.toFixed(0)} ms, {result.options.steps} DDIM steps {t.denoise.toFixed(0)}{' '}
        ms, decoder {t.decode.toFixed(0)} ms
        {result.refinement !== null && <>, refine {t.refine.toFixed(0)} ms</>}.
      </p>
      {result.evaluation !== undefined && (
        <>
          <ComparisonChart evaluation={result.evaluation} />
          <EvaluationTable evaluation={result.evaluation} />
          <BestSample evaluation={result.evaluation} files={heldOutFiles} />
          {result.family === 'head' && <FineTuneCard />}
          {result.family === 'head' && <LatentMapCard result={result} />}
        </>
      )}
      {result.unreadable.length > 0 && (
        <details>
          <summary>
            {result.unreadable.length === 1
              ? '1 image could not be read and was left out'
              : `${result.unreadable.length} images could not be read and were left out`}
          </summary>
          <ul>
            {result.unreadable.map((u) => (
              <li key={u}>{u}</li>
            ))}
          </ul>
        </details>
      )}
      {result.refinement !== null && (
        <fieldset className="delivered" data-testid="delivered">
          <legend>Download</legend>
          <label>
            <input
              type="radio"
              name="delivered"
              checked={delivered === 'refined'}
              onChange={() => setDelivered('refined')}
            />{' '}
            {describeRefinement(result.refinement)} (recommended)
          </label>
          <label>
            <input
              type="radio"
              name="delivered"
              checked={delivered === 'plain'}
              onChange={() => setDelivered('plain')}
            />{' '}
            plain generated (as the diffusion made them)
          </label>
        </fieldset>
      )}
      <table data-testid="generated-table">
        <thead>
          <tr>
            <th>sample</th>
            <th>tensors</th>
            <th>download</th>
          </tr>
        </thead>
        <tbody>
          {networks.map((net, s) => (
            <tr key={s}>
              <td>{s}</td>
              <td>
                {Object.entries(net)
                  .map(([name, t]) => `${name} [${t.shape.join('×')}]`)
                  .join(', ')}
              </td>
              <td>
                <button
                  onClick={() =>
                    save(
                      encodeSafetensors(net, metadata(result, s, delivered)),
                      `sample-${s}.safetensors`,
                    )
                  }
                >
                  safetensors
                </button>{' '}
                <button onClick={() => save(onnx[s]!, `sample-${s}.onnx`)}>ONNX</button>{' '}
                {result.family === 'head' && (
                  <>
                    <button
                      data-testid={`classifier-${s}`}
                      disabled={exporting !== null}
                      onClick={() => void downloadClassifier(s, 'tfjs')}
                    >
                      {exporting === `tfjs-${s}` ? 'building…' : 'whole classifier (tfjs, zip)'}
                    </button>{' '}
                    <button
                      data-testid={`classifier-onnx-${s}`}
                      disabled={exporting !== null}
                      onClick={() => void downloadClassifier(s, 'onnx')}
                    >
                      {exporting === `onnx-${s}` ? 'building…' : 'whole classifier (ONNX, zip)'}
                    </button>{' '}
                  </>
                )}
                <button
                  onClick={() =>
                    save(
                      JSON.stringify({
                        classes: result.classes,
                        ...Object.fromEntries(
                          Object.entries(net).map(([k, v]) => [
                            k,
                            { shape: v.shape, data: Array.from(v.data) },
                          ]),
                        ),
                      }),
                      `sample-${s}.json`,
                      'application/json',
                    )
                  }
                >
                  JSON
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {exportError !== null && (
        <p className="error" role="alert">
          The classifier could not be built: {exportError}
        </p>
      )}
      <button
        onClick={() =>
          save(modelCard(result, plain ? 'plain' : 'refined'), 'MODEL_CARD.md', 'text/markdown')
        }
      >
        Model card
      </button>
    </>
  );
}
