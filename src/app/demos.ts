// The demo datasets shipped with the app (public/demo/, written by the factory's
// `d2nwg demo` stage): a few seen and unseen datasets, each with support and
// held-out images and the "pretrained" head it is compared with.

import type { PretrainedHead } from '../engine/evaluation';
import { readVerified, type FileSource } from '../engine/files';
import { decodeSafetensors } from '../engine/safetensors';
import { array, literal, number, object, parse, record, string } from '../engine/schema';
import type { PickedFile } from './dataset';

const demoSchema = object({
  id: string,
  title: string,
  side: literal('seen', 'unseen'),
  description: string,
  classes: array(string),
  support: record(array(string)),
  query: record(array(string)),
  pretrained: object({
    file: string,
    sha256: string,
    bytes: number,
    source: string,
    kind: string,
    query_accuracy: number,
  }),
});
export type Demo = ReturnType<typeof demoSchema>;

export const demoIndexSchema = object({
  rebuild_command: string,
  inputs_sha256: string,
  demos: array(demoSchema),
});
export type DemoIndex = ReturnType<typeof demoIndexSchema>;

export async function readDemoIndex(source: FileSource): Promise<DemoIndex> {
  const bytes = await source('index.json');
  return parse(demoIndexSchema, JSON.parse(new TextDecoder().decode(bytes)), 'demo/index.json');
}

export interface LoadedDemo {
  support: PickedFile[];
  query: PickedFile[];
  pretrained: PretrainedHead;
}

/** Reads a demo's images (as files under "<id>/<class>/<name>") and its pretrained head. */
export async function loadDemo(source: FileSource, demo: Demo): Promise<LoadedDemo> {
  const files = async (split: Record<string, string[]>): Promise<PickedFile[]> =>
    (
      await Promise.all(
        demo.classes.map((name) =>
          Promise.all(
            (split[name] ?? []).map(async (path) => {
              const bytes = await source(`${demo.id}/${path}`);
              const file = new File([bytes as Uint8Array<ArrayBuffer>], path.split('/').at(-1)!, {
                type: 'image/png',
              });
              return { file, path: `${demo.id}/${name}/${file.name}` };
            }),
          ),
        ),
      )
    ).flat();
  const head = decodeSafetensors(
    await readVerified(source, `${demo.id}/${demo.pretrained.file}`, demo.pretrained),
  ).tensors;
  const { weight, bias } = head;
  if (weight === undefined || bias === undefined || weight.shape[0] !== demo.classes.length)
    throw new Error(`demo ${demo.id}: its pretrained head is not [${demo.classes.length}, F]`);
  return {
    support: await files(demo.support),
    query: await files(demo.query),
    pretrained: {
      classes: demo.classes,
      weight: weight.data,
      bias: bias.data,
      kind: demo.pretrained.kind,
      source: demo.pretrained.source,
    },
  };
}

/** The head's rows reordered to `classes` (the page sorts class folders by name). */
export function reorderRows(head: PretrainedHead, classes: readonly string[]): PretrainedHead {
  const dim = head.weight.length / head.classes.length;
  const weight = new Float32Array(classes.length * dim);
  const bias = new Float32Array(classes.length);
  classes.forEach((name, c) => {
    const from = head.classes.indexOf(name);
    if (from < 0) throw new Error(`the pretrained head has no row for class ${name}`);
    weight.set(head.weight.subarray(from * dim, (from + 1) * dim), c * dim);
    bias[c] = head.bias[from]!;
  });
  return { ...head, classes: [...classes], weight, bias };
}
