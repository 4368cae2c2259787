// Writing ONNX models of generated networks, so a user can run them anywhere
// ONNX runs. A minimal protobuf encoder for the few messages a plain
// feed-forward graph needs (field numbers from onnx/onnx.proto, IR version 8,
// opset 17), and the two graphs we write here: a whole generated CNN, and a
// classifier head on backbone features. The builders (tensorProto, node,
// valueInfo, model) are exported for graphs written elsewhere
// (backbone-onnx.ts: the image backbone with a head, as one classifier).

import type { CnnArchLayout, CnnWeights } from './cnn-generator';

const OPSET = 17;
const IR_VERSION = 8;
const FLOAT = 1; // TensorProto.DataType
const INT64 = 7;
const ATTR_INT = 2; // AttributeProto.AttributeType
const ATTR_INTS = 7;

const utf8 = new TextEncoder();

/** Protobuf wire format: varints, and length-delimited fields for strings, bytes and messages. */
class Message {
  private readonly parts: Uint8Array[] = [];

  private varint(value: number | bigint): void {
    let v = BigInt.asUintN(64, BigInt(value));
    const bytes: number[] = [];
    do {
      let byte = Number(v & 0x7fn);
      v >>= 7n;
      if (v > 0n) byte |= 0x80;
      bytes.push(byte);
    } while (v > 0n);
    this.parts.push(Uint8Array.from(bytes));
  }

  int(field: number, value: number): this {
    this.varint((field << 3) | 0);
    this.varint(value);
    return this;
  }

  bytes(field: number, value: Uint8Array): this {
    this.varint((field << 3) | 2);
    this.varint(value.length);
    this.parts.push(value);
    return this;
  }

  string(field: number, value: string): this {
    return this.bytes(field, utf8.encode(value));
  }

  message(field: number, value: Message): this {
    return this.bytes(field, value.encode());
  }

  encode(): Uint8Array {
    const out = new Uint8Array(this.parts.reduce((n, p) => n + p.length, 0));
    let offset = 0;
    for (const p of this.parts) {
      out.set(p, offset);
      offset += p.length;
    }
    return out;
  }
}

/** An initializer: float32, or int64 (shapes and axes given as tensors, e.g. Squeeze's axes). */
export function tensorProto(
  name: string,
  shape: number[],
  data: Float32Array | BigInt64Array,
): Message {
  const count = shape.reduce((n, d) => n * d, 1);
  if (data.length !== count)
    throw new Error(`tensor ${name}: ${data.length} values for shape [${shape.join(', ')}]`);
  const m = new Message();
  for (const d of shape) m.int(1, d);
  m.int(2, data instanceof BigInt64Array ? INT64 : FLOAT);
  m.string(8, name);
  // raw_data is little-endian; typed arrays are in platform order, little-endian everywhere we run.
  return m.bytes(9, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
}

/** A float tensor's type with named (dynamic) or fixed dimensions. */
export function valueInfo(name: string, dims: (number | string)[]): Message {
  const shape = new Message();
  for (const d of dims) {
    const dim = new Message();
    if (typeof d === 'number') dim.int(1, d);
    else dim.string(2, d);
    shape.message(1, dim);
  }
  const tensorType = new Message().int(1, FLOAT).message(2, shape);
  return new Message().string(1, name).message(2, new Message().message(1, tensorType));
}

/** An operator attribute: an int, or a list of ints. */
export type Attribute = [name: string, value: number | number[]];

export function node(
  op: string,
  inputs: string[],
  outputs: string[],
  attributes: Attribute[] = [],
): Message {
  const m = new Message();
  for (const i of inputs) m.string(1, i);
  for (const o of outputs) m.string(2, o);
  m.string(3, `${op}_${outputs[0]}`);
  m.string(4, op);
  for (const [name, value] of attributes) {
    const a = new Message().string(1, name);
    if (Array.isArray(value)) {
      for (const v of value) a.int(8, v);
      a.int(20, ATTR_INTS);
    } else {
      a.int(3, value);
      a.int(20, ATTR_INT);
    }
    m.message(5, a);
  }
  return m;
}

export type { Message };

export interface Graph {
  name: string;
  nodes: Message[];
  initializers: Message[];
  inputs: Message[];
  outputs: Message[];
}

/** The model: `metadata` becomes metadata_props (string key–value pairs that ONNX tools show). */
export function model(
  graph: Graph,
  docString: string,
  metadata: Record<string, string> = {},
): Uint8Array {
  const g = new Message();
  for (const n of graph.nodes) g.message(1, n);
  g.string(2, graph.name);
  for (const i of graph.initializers) g.message(5, i);
  for (const i of graph.inputs) g.message(11, i);
  for (const o of graph.outputs) g.message(12, o);
  const m = new Message()
    .int(1, IR_VERSION)
    .string(2, 'd2nwg-web')
    .string(6, docString)
    .message(7, g)
    .message(8, new Message().string(1, '').int(2, OPSET));
  for (const [key, value] of Object.entries(metadata))
    m.message(14, new Message().string(1, key).string(2, value));
  return m.encode();
}

/**
 * `model` with more graph outputs: the named float values, of undeclared
 * shape (the runtime infers it), so that running it shows their shapes
 * (graph-cost.ts). Protobuf merges a message field that occurs twice, so a
 * second `graph` holding only these outputs appends them to the first.
 */
export function withOutputs(modelBytes: Uint8Array, names: readonly string[]): Uint8Array {
  const graph = new Message();
  for (const name of names)
    graph.message(
      12,
      new Message()
        .string(1, name)
        .message(2, new Message().message(1, new Message().int(1, FLOAT))),
    );
  const extra = new Message().message(7, graph).encode();
  const out = new Uint8Array(modelBytes.length + extra.length);
  out.set(modelBytes);
  out.set(extra, modelBytes.length);
  return out;
}

function weight(weights: CnnWeights, name: string): Message {
  const t = weights[name];
  if (t === undefined) throw new Error(`the network has no tensor ${name}`);
  return tensorProto(name, t.shape, t.data);
}

/**
 * The whole CNN as ONNX: `images [N, 1, 28, 28]` → `logits [N, classes]`, with
 * the operators of models/d2nwg/networks.py (conv → max-pool → tanh, flatten, dense with
 * tanh between). Initializers keep the PyTorch tensor names.
 */
export function cnnToOnnx(
  layout: CnnArchLayout,
  weights: CnnWeights,
  docString = '',
  { penultimate = false }: { penultimate?: boolean } = {},
): Uint8Array {
  const nodes: Message[] = [];
  const initializers: Message[] = [];
  let current = 'images';
  for (const c of layout.convs) {
    initializers.push(weight(weights, `${c.name}.weight`), weight(weights, `${c.name}.bias`));
    const p = c.padding;
    nodes.push(
      node(
        'Conv',
        [current, `${c.name}.weight`, `${c.name}.bias`],
        [`${c.name}_conv`],
        [
          ['kernel_shape', [c.kernel, c.kernel]],
          ['pads', [p, p, p, p]],
        ],
      ),
    );
    current = `${c.name}_conv`;
    if (c.pool > 1) {
      nodes.push(
        node(
          'MaxPool',
          [current],
          [`${c.name}_pool`],
          [
            ['kernel_shape', [c.pool, c.pool]],
            ['strides', [c.pool, c.pool]],
          ],
        ),
      );
      current = `${c.name}_pool`;
    }
    nodes.push(node('Tanh', [current], [`${c.name}_out`]));
    current = `${c.name}_out`;
  }
  nodes.push(node('Flatten', [current], ['flat'], [['axis', 1]]));
  current = 'flat';
  // penultimate: stop before the last layer and return its input, `features [N, head_in_features]`.
  const dense = penultimate ? layout.dense.slice(0, -1) : layout.dense;
  dense.forEach((d, i) => {
    initializers.push(weight(weights, `${d.name}.weight`), weight(weights, `${d.name}.bias`));
    const last = !penultimate && i === layout.dense.length - 1;
    const out = last ? 'logits' : `${d.name}_linear`;
    nodes.push(
      node('Gemm', [current, `${d.name}.weight`, `${d.name}.bias`], [out], [['transB', 1]]),
    );
    current = out;
    if (!last) {
      nodes.push(node('Tanh', [current], [`${d.name}_out`]));
      current = `${d.name}_out`;
    }
  });
  if (penultimate) nodes.push(node('Identity', [current], ['features']));
  const classes = weights[`${layout.head_layer}.bias`]!.shape[0]!;
  return model(
    {
      name: penultimate ? 'generated_cnn_features' : 'generated_cnn',
      nodes,
      initializers,
      inputs: [valueInfo('images', ['batch', 1, 28, 28])],
      outputs: [
        penultimate
          ? valueInfo('features', ['batch', layout.head_in_features])
          : valueInfo('logits', ['batch', classes]),
      ],
    },
    docString,
  );
}

/**
 * A classifier head as ONNX: `features [N, F]` (raw backbone features) →
 * `logits [N, C]` = unit(features) · weightᵀ + bias; the head's own
 * normalisation is inside, so it chains directly after the backbone graph.
 */
export function headToOnnx(
  weightData: Float32Array,
  biasData: Float32Array,
  classes: number,
  featureDim: number,
  docString = '',
): Uint8Array {
  const nodes = [
    node(
      'ReduceL2',
      ['features'],
      ['norm'],
      [
        ['axes', [1]], // an attribute up to opset 17 (an input from 18)
        ['keepdims', 1],
      ],
    ),
    node('Max', ['norm', 'epsilon'], ['safe_norm']),
    node('Div', ['features', 'safe_norm'], ['unit']),
    node('Gemm', ['unit', 'weight', 'bias'], ['logits'], [['transB', 1]]),
  ];
  return model(
    {
      name: 'generated_head',
      nodes,
      initializers: [
        tensorProto('weight', [classes, featureDim], weightData),
        tensorProto('bias', [classes], biasData),
        tensorProto('epsilon', [], Float32Array.from([1e-12])),
      ],
      inputs: [valueInfo('features', ['batch', featureDim])],
      outputs: [valueInfo('logits', ['batch', classes])],
    },
    docString,
  );
}
