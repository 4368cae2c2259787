import { describeBackend } from '../engine/runtime';
import type { FeaturesResult } from '../worker/protocol';
import { useAppStore } from './context';
import { describeWork } from '../engine/progress';

function norm(features: Float32Array): number {
  return Math.sqrt(features.reduce((s, v) => s + v * v, 0));
}

function download(result: FeaturesResult): void {
  const json = JSON.stringify({
    backbone_id: result.backboneId,
    backend: result.backend,
    feature_dim: result.featureDim,
    images: result.images.map((image) => ({
      name: image.name,
      width: image.width,
      height: image.height,
      features: Array.from(image.features),
    })),
  });
  const url = URL.createObjectURL(new Blob([json], { type: 'application/json' }));
  const link = document.createElement('a');
  link.href = url;
  link.download = 'features.json';
  link.click();
  URL.revokeObjectURL(url);
}

export function FeaturesCard() {
  const featuresRun = useAppStore((s) => s.featuresRun);
  const extractFeatures = useAppStore((s) => s.extractFeatures);

  return (
    <section className="card" aria-labelledby="features-title">
      <h2 id="features-title">Backbone features</h2>
      <p>
        Pick images to see what the frozen backbone makes of them: each becomes one feature vector,
        computed in this page.
      </p>
      <input
        type="file"
        accept="image/*"
        multiple
        aria-label="Images for feature extraction"
        data-testid="features-input"
        disabled={featuresRun.status === 'running'}
        onChange={(e) => void extractFeatures(Array.from(e.target.files ?? []))}
      />
      <div data-testid="features-status" data-status={featuresRun.status} role="status">
        {featuresRun.status === 'running' &&
          describeWork(featuresRun.backend, featuresRun.progress)}
        {featuresRun.status === 'error' && (
          <p className="error" data-testid="features-error">
            {featuresRun.message}
          </p>
        )}
        {featuresRun.status === 'done' && (
          <>
            <p>
              Backbone <code>{featuresRun.result.backboneId}</code> on tfjs-
              <span data-testid="features-backend" data-backend={featuresRun.result.backend}>
                {describeBackend(featuresRun.result)}
              </span>
              : {featuresRun.result.featureDim} features per image,{' '}
              {featuresRun.result.msPerImage.toFixed(0)} ms per image.{' '}
              <button onClick={() => download(featuresRun.result)}>Download features.json</button>
            </p>
            <table>
              <thead>
                <tr>
                  <th>image</th>
                  <th>size</th>
                  <th>‖features‖</th>
                  <th>first values</th>
                </tr>
              </thead>
              <tbody>
                {featuresRun.result.images.map((image) => (
                  <tr key={image.name}>
                    <td>{image.name}</td>
                    <td>
                      {image.width}×{image.height}
                    </td>
                    <td>{norm(image.features).toFixed(2)}</td>
                    <td>
                      {Array.from(image.features.subarray(0, 4), (v) => v.toFixed(3)).join(', ')}…
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
