import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
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
    const { tensors, metadata } = decodeSafetensors(
      new Uint8Array(readFileSync(join(out, 'sample-1.safetensors'))),
    );
    expect(tensors.weight!.shape).toEqual([2, 1792]);
    expect(tensors.bias!.shape).toEqual([2]);
    expect(JSON.parse(metadata.classes!)).toEqual(['shapes', 'squares']);
    expect(readFileSync(join(out, 'MODEL_CARD.md'), 'utf8')).toContain('| 1 | squares |');
    expect(readFileSync(join(out, 'sample-1.onnx')).length).toBeGreaterThan(2 * 1792 * 4);

    const result = await evaluateOnItself<{
      generated: { samples: number; accuracies: number[]; mean: number };
      nearest_class_mean: number;
      logistic_regression: { accuracy: number };
      random_init: { networks: number };
    }>(data, out, io);
    expect(result.generated.samples).toBe(2);
    for (const a of result.generated.accuracies) expect(a).toBeGreaterThanOrEqual(0);
    // Support and query are the same images here: both baselines must fit them.
    expect(result.nearest_class_mean).toBe(1);
    expect(result.logistic_regression.accuracy).toBe(1);
    expect(result.random_init.networks).toBe(10);
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
    for (const m of [prototypes.generated.mean, prototypes.random_init.mean]) {
      expect(m).toBeGreaterThanOrEqual(0);
      expect(m).toBeLessThanOrEqual(1);
    }
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
    expect(io.err).toEqual([
      `d2nwg: cannot read folder ${missing}: ENOENT: no such file or directory, stat '${missing}'\n`,
      'd2nwg: unknown --family "mlp"; choose head or cnn\n',
      'd2nwg: unknown --arch "cnn-x"; choose one of cnn-s, cnn-w\n',
      'd2nwg: --samples must be a number, got "many"\n',
      'd2nwg: evaluate needs --support <folder>, --query <folder> and --weights <dir>\n',
    ]);
  });
});
