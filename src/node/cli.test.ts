import { spawnSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { decodeSafetensors } from '../engine/safetensors';
import { main } from './cli';

const fixtures = fileURLToPath(new URL('../../models/fixtures/images/', import.meta.url));

/** A two-class folder from the factory's fixture images, plus a file that is not an image. */
function classFolder(): string {
  const root = mkdtempSync(join(tmpdir(), 'd2nwg-cli-'));
  const layout = {
    squares: ['large-checker.png', 'tiny.png'],
    shapes: ['tall.png', 'wide.png', 'glyph-rgba.png'],
  };
  for (const [name, files] of Object.entries(layout)) {
    mkdirSync(join(root, name));
    for (const file of files) copyFileSync(join(fixtures, file), join(root, name, file));
  }
  writeFileSync(join(root, 'shapes', 'notes.txt'), 'not an image');
  return root;
}

function captured() {
  const out: string[] = [];
  const err: string[] = [];
  vi.spyOn(process.stdout, 'write').mockImplementation((s) => (out.push(String(s)), true));
  vi.spyOn(process.stderr, 'write').mockImplementation((s) => (err.push(String(s)), true));
  return { out, err };
}

/** `evaluate --json` with the class folder as both support and query; its report, parsed. */
async function evaluateOnItself<T>(
  data: string,
  weights: string,
  io: { err: string[]; out: string[] },
): Promise<T> {
  const code = await main([
    'evaluate',
    '--support',
    data,
    '--query',
    data,
    '--weights',
    weights,
    '--json',
  ]);
  expect(code, io.err.join('')).toBe(0);
  return JSON.parse(io.out.join('')) as T;
}

afterEach(() => vi.restoreAllMocks());

describe('d2nwg command-line tool', () => {
  it('generates heads for a class folder and evaluates them against baselines', async () => {
    const data = classFolder();
    const out = join(mkdtempSync(join(tmpdir(), 'd2nwg-out-')), 'heads');
    const io = captured();
    const code = await main([
      'generate',
      '--data',
      data,
      '--out',
      out,
      '--samples',
      '2',
      '--steps',
      '5',
      '--backend',
      'cpu',
    ]);
    expect(code, io.err.join('')).toBe(0);
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    expect(report.classes).toEqual(['shapes', 'squares']);
    expect(report.images_per_class).toEqual([3, 2]);
    expect(report.skipped_files).toEqual(['shapes/notes.txt']);
    expect(report.backend).toBe('cpu');
    expect(report.samples).toEqual(['sample-0', 'sample-1']);
    // Refined by default, with the λ the manifest calibrated for 2 images a class (the
    // smallest class); the plain generated heads are kept beside them.
    const manifest = JSON.parse(
      readFileSync(new URL('../../models/release/head/manifest.json', import.meta.url), 'utf8'),
    ) as { refine: { lambda_by_shots: Record<string, number> } };
    const calibrated = manifest.refine.lambda_by_shots['2'];
    expect(report.refinement).toEqual({ lambda: calibrated, rule: 'calibrated', min_images: 2 });
    expect(report.generated_samples).toEqual(['generated-0', 'generated-1']);
    const read = (file: string) => decodeSafetensors(new Uint8Array(readFileSync(join(out, file))));
    const { tensors, metadata } = read('sample-1.safetensors');
    expect(tensors.weight!.shape).toEqual([2, 1792]);
    expect(tensors.bias!.shape).toEqual([2]);
    expect(JSON.parse(metadata.classes!)).toEqual(['shapes', 'squares']);
    const plain = read('generated-1.safetensors').tensors;
    expect(plain.weight!.shape).toEqual([2, 1792]);
    expect(plain.bias!.shape).toEqual([2]);
    // (At the λ calibrated for 2 images a class the refine may leave a head that already fits
    // its support as it was, so the two files are not asserted to differ.)
    const card = readFileSync(join(out, 'MODEL_CARD.md'), 'utf8');
    expect(card).toContain('| 1 | squares |');
    expect(card).toContain(`**generated + refined**`);
    expect(card).toContain(`λ = ${calibrated}`);
    expect(readFileSync(join(out, 'sample-1.onnx')).length).toBeGreaterThan(2 * 1792 * 4);

    const result = await evaluateOnItself<{
      generated: { samples: number; accuracies: number[]; mean: number };
      nearest_class_mean: number;
      logistic_regression: { accuracy: number; c: number };
      random_init: { networks: number };
      generated_refined: {
        accuracies: number[];
        mean: number;
        lambda: number;
        lambda_rule: string;
      };
      trained_head: { accuracy: number; train_ms: number };
    }>(data, out, io);
    expect(result.generated.samples).toBe(2);
    // One accuracy per sample, each a count of the 5 query images.
    expect(result.generated.accuracies).toHaveLength(2);
    for (const a of result.generated.accuracies) expect(Math.round(a * 5)).toBeCloseTo(a * 5, 9);
    // Support and query are the same images here: nearest class mean must fit them; logistic
    // regression takes the factory's C grid, where C = 1 may underfit 5 images but beats chance.
    expect(result.nearest_class_mean).toBe(1);
    expect([1, 10, 100, 1000]).toContain(result.logistic_regression.c);
    expect(result.logistic_regression.accuracy).toBeGreaterThan(0.5);
    expect(result.random_init.networks).toBe(10);
    // Refined toward the support, the heads fit the support images they are scored on here.
    expect(result.generated_refined.accuracies).toHaveLength(2);
    expect(result.generated_refined.mean).toBe(1);
    // 2–3 images a class: the λ calibrated for 2 shots, as generation chose.
    expect(result.generated_refined).toMatchObject({
      lambda: calibrated,
      lambda_rule: 'calibrated',
    });
    // A head trained here with tfjs fits the images it was trained on.
    expect(result.trained_head.accuracy).toBe(1);
    expect(result.trained_head.train_ms).toBeGreaterThan(0);
  }, 120_000);

  it('generates whole CNNs for a class folder and evaluates them through their ONNX files', async () => {
    const data = classFolder();
    const out = join(mkdtempSync(join(tmpdir(), 'd2nwg-out-')), 'cnns');
    const io = captured();
    const code = await main([
      'generate',
      '--data',
      data,
      '--out',
      out,
      '--family',
      'cnn',
      '--arch',
      'cnn-s',
      '--samples',
      '2',
      '--steps',
      '4',
      '--backend',
      'cpu',
    ]);
    expect(code, io.err.join('')).toBe(0);
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    expect(report).toMatchObject({ family: 'cnn', arch: 'cnn-s', classes: ['shapes', 'squares'] });
    expect(typeof report.dark_background).toBe('boolean');
    const { tensors, metadata } = decodeSafetensors(
      new Uint8Array(readFileSync(join(out, 'sample-0.safetensors'))),
    );
    expect(Object.keys(tensors)).toEqual([
      'conv1.weight',
      'conv1.bias',
      'conv2.weight',
      'conv2.bias',
      'conv3.weight',
      'conv3.bias',
      'fc1.weight',
      'fc1.bias',
      'fc2.weight',
      'fc2.bias',
    ]);
    expect(tensors['conv1.weight']!.shape).toEqual([8, 1, 5, 5]);
    expect(tensors['fc2.weight']!.shape).toEqual([2, 20]); // one row per class of the folder
    expect(metadata).toMatchObject({ family: 'cnn', arch: 'cnn-s' });
    expect(readFileSync(join(out, 'MODEL_CARD.md'), 'utf8')).toContain('CNN cnn-s');

    const result = await evaluateOnItself<{
      family: string;
      generated: { samples: number; accuracies: number[] };
      random_init: { networks: number; mean: number };
      with_prototype_last_layer: {
        generated: { mean: number };
        random_init: { mean: number };
        pretrained: { task: string; accuracy: number };
      };
    }>(data, out, io);
    expect(result.family).toBe('cnn');
    expect(result.generated.samples).toBe(2);
    for (const a of result.generated.accuracies) expect(a * 5).toSatisfy(Number.isInteger); // 5 query images
    expect(result.random_init.networks).toBe(10);
    const prototypes = result.with_prototype_last_layer;
    expect(prototypes.pretrained.task).toMatch(/^[a-z0-9-]+\/[^:]+:(\d+,){9}\d+$/); // a seen zoo task
    expect(prototypes.pretrained.accuracy * 5).toSatisfy(Number.isInteger);
    // Means of counts over 5 query images: of 2 generated bodies, and of 10 random ones.
    expect(Math.round(prototypes.generated.mean * 10)).toBeCloseTo(
      prototypes.generated.mean * 10,
      9,
    );
    expect(Math.round(prototypes.random_init.mean * 50)).toBeCloseTo(
      prototypes.random_init.mean * 50,
      9,
    );
  }, 120_000);

  it('answers mistakes with one line and exit code 1', async () => {
    const io = captured();
    const scratch = mkdtempSync(join(tmpdir(), 'd2nwg-mistakes-'));
    const missing = join(scratch, 'no-such-folder');
    const out = join(scratch, 'out');
    expect(await main(['generate', '--data', missing, '--out', out])).toBe(1);
    expect(await main(['generate', '--data', classFolder(), '--out', out, '--family', 'mlp'])).toBe(
      1,
    );
    expect(
      await main([
        'generate',
        '--data',
        classFolder(),
        '--out',
        out,
        '--family',
        'cnn',
        '--arch',
        'cnn-x',
      ]),
    ).toBe(1);
    expect(
      await main(['generate', '--data', classFolder(), '--out', out, '--samples', 'many']),
    ).toBe(1);
    expect(await main(['evaluate', '--support', classFolder()])).toBe(1);
    expect(io.err.filter((line) => line.startsWith('d2nwg:'))).toEqual([
      `d2nwg: cannot read folder ${missing}: ENOENT: no such file or directory, stat '${missing}'\n`,
      'd2nwg: unknown family "mlp"; choose one of head, cnn\n',
      'd2nwg: unknown CNN architecture "cnn-x"; choose one of cnn-s, cnn-w\n',
      'd2nwg: --samples must be a number, got "many"\n',
      'd2nwg: evaluate needs --support <folder>, --query <folder> and --weights <dir>\n',
    ]);
  });

  it('checks every setting before reading an image', async () => {
    const io = captured();
    const out = join(mkdtempSync(join(tmpdir(), 'd2nwg-early-')), 'out');
    expect(
      await main(['generate', '--data', classFolder(), '--out', out, '--backend', 'webgl']),
    ).toBe(1);
    expect(
      await main(['generate', '--data', classFolder(), '--out', out, '--backend', 'wasm']),
    ).toBe(1);
    expect(
      await main(['generate', '--data', classFolder(), '--out', out, '--precision', 'int4']),
    ).toBe(1);
    expect(io.err[0]).toBe(
      'd2nwg: unknown backend "webgl"; choose one of auto, webgpu, wasm, cpu\n',
    );
    expect(io.err.at(-2)).toMatch(
      /^d2nwg: no backend could run the model \(asked for wasm\): wasm: not offered in node/,
    );
    expect(io.err.at(-1)).toBe('d2nwg: unknown precision "int4"; choose one of fp32, fp16, int8\n');
    // No image was decoded or featurised for any of them.
    expect(io.err.join('')).not.toMatch(/reading images|extracting features/);
    expect(existsSync(out)).toBe(false);
  });

  it('replaces an earlier run in the output folder, so evaluate scores only the new samples', async () => {
    const data = classFolder();
    const out = join(mkdtempSync(join(tmpdir(), 'd2nwg-rerun-')), 'heads');
    const io = captured();
    const run = (samples: string, ...more: string[]) =>
      main([
        'generate',
        '--data',
        data,
        '--out',
        out,
        '--samples',
        samples,
        '--steps',
        '2',
        ...more,
      ]);
    expect(await run('3'), io.err.join('')).toBe(0);
    writeFileSync(join(out, 'my-notes.txt'), 'kept');
    // The second run delivers the plain generated heads: no refined files, no generated-<k> copies.
    expect(await run('1', '--plain'), io.err.join('')).toBe(0);
    expect(readdirSync(out).sort()).toEqual([
      'MODEL_CARD.md',
      'my-notes.txt',
      'report.json',
      'sample-0.json',
      'sample-0.onnx',
      'sample-0.safetensors',
    ]);
    // 3 samples × (safetensors, onnx, json, generated-<k>) + report + model card
    expect(io.err.join('')).toContain(`removed 14 files of an earlier run from ${out}`);
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    expect(report.refinement).toBeNull();
    expect(report.generated_samples).toEqual(['sample-0']);
    expect(readFileSync(join(out, 'MODEL_CARD.md'), 'utf8')).toContain('plain generated weights');
    const result = await evaluateOnItself<{ generated: { samples: number } }>(data, out, io);
    expect(result.generated.samples).toBe(1);
  }, 120_000);

  it('evaluate refuses a class mismatch or a missing weights folder before extracting features', async () => {
    const io = captured();
    const support = classFolder();
    const query = classFolder();
    mkdirSync(join(query, 'circles'));
    copyFileSync(join(fixtures, 'tiny.png'), join(query, 'circles', 'tiny.png'));
    const weights = join(mkdtempSync(join(tmpdir(), 'd2nwg-weights-')), 'heads');
    expect(
      await main([
        'generate',
        '--data',
        support,
        '--out',
        weights,
        '--samples',
        '1',
        '--steps',
        '1',
      ]),
    ).toBe(0);
    io.err.length = 0;
    const evaluate = (q: string, w: string) =>
      main(['evaluate', '--support', support, '--query', q, '--weights', w]);
    expect(await evaluate(query, weights)).toBe(1);
    expect(await evaluate(support, join(weights, 'missing'))).toBe(1);
    expect(io.err).toEqual([
      'd2nwg: the query classes (circles, shapes, squares) differ from the support classes (shapes, squares)\n',
      `d2nwg: --weights ${join(weights, 'missing')} does not exist; run d2nwg generate --out ${join(weights, 'missing')} first\n`,
    ]);
  }, 120_000);

  it('says so when given the parent of support/ and query/ folders', async () => {
    const io = captured();
    const parent = mkdtempSync(join(tmpdir(), 'd2nwg-parent-'));
    for (const split of ['support', 'query']) {
      for (const cls of ['a', 'b']) {
        mkdirSync(join(parent, split, cls), { recursive: true });
        copyFileSync(join(fixtures, 'tiny.png'), join(parent, split, cls, 'tiny.png'));
      }
    }
    expect(await main(['generate', '--data', parent, '--out', join(parent, 'out')])).toBe(1);
    expect(io.err.join('')).toContain(
      `looks like a parent folder (query, support hold folders, not images); pass one of them, e.g. --data ${join(parent, 'query')}`,
    );
  });

  it('--help lists the release defaults', async () => {
    const io = captured();
    expect(await main(['--help'])).toBe(0);
    const read = (family: string) =>
      JSON.parse(
        readFileSync(
          new URL(`../../models/release/${family}/manifest.json`, import.meta.url),
          'utf8',
        ),
      ) as { sampling_defaults: { steps: number; samples: number }; default_arch: string };
    // The defaults shown are those of --family's default, head; the cnn architecture is cnn's.
    const manifest = { ...read('head'), default_arch: read('cnn').default_arch };
    const help = io.out.join('');
    expect(help).toContain(
      `--steps K                DDIM steps (default ${manifest.sampling_defaults.steps})`,
    );
    expect(help).toContain(
      `--samples N              networks to generate (default ${manifest.sampling_defaults.samples})`,
    );
    expect(help).toContain(`cnn architecture (default ${manifest.default_arch})`);
  });

  it('runs as a command without a GPU warning on auto', () => {
    const data = classFolder();
    const out = join(mkdtempSync(join(tmpdir(), 'd2nwg-bin-')), 'heads');
    const bin = fileURLToPath(new URL('../../bin/d2nwg.js', import.meta.url));
    const run = spawnSync(
      process.execPath,
      [bin, 'generate', '--data', data, '--out', out, '--samples', '1', '--steps', '2'],
      { encoding: 'utf8' },
    );
    expect(run.status, run.stderr).toBe(0);
    expect(run.stderr).not.toMatch(/vulkan|dawn/i);
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as {
      backend: string;
    };
    expect(report.backend).toBe('cpu');
  }, 120_000);
});
