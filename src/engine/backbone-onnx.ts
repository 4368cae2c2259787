// A whole image classifier as one ONNX model: the release's backbone (a tfjs
// graph model, converted here node by node) followed by a generated head. The
// input is the tfjs model's own, `images [N, size, size, 3]` NHWC in [0, 1]
// made by preprocess.ts, so the same preprocessing feeds both. Inside, the
// graph works in NCHW (ONNX's layout): one Transpose after the input, kernels
// re-laid-out when written. Then the engine's head: L2-normalise the features
// (divide by max(‖x‖, 1e-12)), logits = x·Wᵀ + b, softmax.
//
// Weights are dequantised exactly as tfjs does at load (value = q·scale + min,
// rounded to float32), so both runtimes compute with the same numbers.
// Padding is written out explicitly from the known spatial sizes, TF's rule
// (samePadding) rather than auto_pad, so no runtime's reading of SAME matters.

import type { BackboneManifest } from './backbone';
import type { Head } from './heads';
import { model, node, tensorProto, valueInfo, type Attribute, type Message } from './onnx-writer';

interface TfjsAttr {
  i?: string;
  f?: number;
  b?: boolean;
  s?: string; // base64
  list?: { i?: string[]; s?: string[]; f?: number[] };
  shape?: { dim?: { size: string }[] };
}

interface TfjsNode {
  name: string;
  op: string;
  input?: string[];
  attr?: Record<string, TfjsAttr>;
}

interface WeightSpec {
  name: string;
  shape: number[];
  dtype: string;
  quantization?: { min?: number; scale?: number; dtype: string };
}

interface TfjsModelJson {
  modelTopology: { node: TfjsNode[] };
  weightsManifest: { weights: WeightSpec[] }[];
}

interface Constant {
  kind: 'constant';
  name: string; // the tfjs name
  shape: number[];
  data: Float32Array;
}

/** A tensor computed by the graph; `shape` leaves out the batch. 'nchw': [C, H, W]; 'plain': as tfjs. */
interface Activation {
  kind: 'activation';
  name: string; // the ONNX name
  layout: 'nchw' | 'plain';
  shape: number[];
}

type Value = Constant | Activation;

/** Weights of a tfjs weights manifest from one concatenated buffer, dequantised as tfjs's decodeWeights. */
function readWeights(specs: WeightSpec[], bytes: Uint8Array): Map<string, Constant> {
  const out = new Map<string, Constant>();
  let offset = 0;
  for (const spec of specs) {
    const count = spec.shape.reduce((n, d) => n * d, 1);
    if (spec.dtype !== 'float32')
      throw new Error(`weight ${spec.name} is ${spec.dtype}; only float32 weights are converted`);
    const q = spec.quantization;
    let data: Float32Array;
    if (q === undefined) {
      data = new Float32Array(bytes.slice(offset, offset + 4 * count).buffer);
      offset += 4 * count;
    } else if ((q.dtype === 'uint8' || q.dtype === 'uint16') && q.min !== undefined) {
      const width = q.dtype === 'uint8' ? 1 : 2;
      const raw = bytes.slice(offset, offset + width * count);
      const levels = width === 1 ? raw : new Uint16Array(raw.buffer);
      const { min, scale = 1 } = q;
      data = new Float32Array(count);
      for (let i = 0; i < count; i++) data[i] = levels[i]! * scale + min;
      offset += width * count;
    } else {
      throw new Error(`weight ${spec.name}: quantization ${q.dtype} is not converted`);
    }
    if (offset > bytes.length) throw new Error(`weights.bin ends inside weight ${spec.name}`);
    out.set(spec.name, { kind: 'constant', name: spec.name, shape: spec.shape, data });
  }
  if (offset !== bytes.length)
    throw new Error(`weights.bin has ${bytes.length} bytes; the manifest describes ${offset}`);
  return out;
}

/**
 * TF's padding of one spatial axis: SAME gives ceil(in / stride) outputs, the
 * odd pixel of padding going after (as ONNX's SAME_UPPER); VALID pads nothing.
 */
export function samePadding(
  inSize: number,
  kernel: number,
  stride: number,
  dilation = 1,
): { before: number; after: number; out: number } {
  const span = (kernel - 1) * dilation + 1;
  const out = Math.ceil(inSize / stride);
  const total = Math.max((out - 1) * stride + span - inSize, 0);
  return { before: Math.floor(total / 2), after: total - Math.floor(total / 2), out };
}

const decodeString = (s: string): string => atob(s);

function ints(n: TfjsNode, key: string, fallback?: number[]): number[] {
  const list = n.attr?.[key]?.list?.i;
  if (list !== undefined) return list.map(Number);
  if (fallback !== undefined) return fallback;
  throw new Error(`${n.op} ${n.name} has no attribute ${key}`);
}

function str(n: TfjsNode, key: string, fallback?: string): string {
  const s = n.attr?.[key]?.s;
  if (s !== undefined) return decodeString(s);
  if (fallback !== undefined) return fallback;
  throw new Error(`${n.op} ${n.name} has no attribute ${key}`);
}

/** Spatial pads ([top, left, bottom, right], ONNX order) and output size of a window op in NHWC. */
function windowPads(
  n: TfjsNode,
  inHw: number[],
  kernel: number[],
  strides: number[],
  dilations: number[],
): { pads: number[]; outHw: number[] } {
  const padding = str(n, 'padding');
  const before: number[] = [];
  const after: number[] = [];
  const outHw: number[] = [];
  for (let a = 0; a < 2; a++) {
    const [size, k, s, d] = [inHw[a]!, kernel[a]!, strides[a]!, dilations[a]!];
    const span = (k - 1) * d + 1;
    let b: number;
    let e: number;
    if (padding === 'SAME') ({ before: b, after: e } = samePadding(size, k, s, d));
    else if (padding === 'VALID') [b, e] = [0, 0];
    else if (padding === 'EXPLICIT') {
      const explicit = ints(n, 'explicit_paddings'); // NHWC: [n0, n1, h0, h1, w0, w1, c0, c1]
      [b, e] = [explicit[2 + 2 * a]!, explicit[3 + 2 * a]!];
    } else throw new Error(`${n.op} ${n.name}: padding ${padding} is not converted`);
    before.push(b);
    after.push(e);
    outHw.push(Math.floor((size + b + e - span) / s) + 1);
  }
  return { pads: [...before, ...after], outHw };
}

/** NHWC window attributes ([1, h, w, 1]) as [h, w]. */
function spatial(n: TfjsNode, key: string, fallback?: number[]): number[] {
  const v = ints(n, key, fallback);
  if (v.length !== 4 || v[0] !== 1 || v[3] !== 1)
    throw new Error(`${n.op} ${n.name}: ${key} [${v.join(', ')}] is not [1, h, w, 1]`);
  return [v[1]!, v[2]!];
}

/** The tfjs feature subgraph, in an order where every node follows its inputs. */
function subgraph(nodes: Map<string, TfjsNode>, output: string): TfjsNode[] {
  const order: TfjsNode[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (name: string): void => {
    const s = state.get(name);
    if (s === 'done') return;
    if (s === 'visiting') throw new Error(`the backbone graph has a cycle through ${name}`);
    const n = nodes.get(name);
    if (n === undefined) throw new Error(`the backbone graph has no node ${name}`);
    state.set(name, 'visiting');
    for (const input of inputsOf(n)) visit(input);
    state.set(name, 'done');
    order.push(n);
  };
  visit(output);
  return order;
}

/** Data inputs by node name (control inputs `^x` dropped; only output 0 of any node is used). */
function inputsOf(n: TfjsNode): string[] {
  return (n.input ?? [])
    .filter((i) => !i.startsWith('^'))
    .map((i) => {
      const [name, index = '0'] = i.split(':');
      if (index !== '0') throw new Error(`${n.op} ${n.name} reads output ${index} of ${name}`);
      return name!;
    });
}

/** The shared '/'-ended prefix of all names, dropped from ONNX names to keep them readable. */
function commonPrefix(names: string[]): string {
  if (names.length === 0) return '';
  let prefix = names[0]!;
  for (const name of names) while (!name.startsWith(prefix)) prefix = prefix.slice(0, -1);
  return prefix.slice(0, prefix.lastIndexOf('/') + 1);
}

/**
 * The backbone (from its tfjs model.json and weights.bin) and a head as one
 * ONNX classifier: `images [N, size, size, 3]` float32 NHWC in [0, 1] →
 * `probabilities [N, C]` and `logits [N, C]`. The class names (and the
 * preprocessing the input expects) are in metadata_props.
 */
export function backboneClassifierOnnx(
  modelJsonBytes: Uint8Array,
  weights: Uint8Array,
  manifest: BackboneManifest,
  head: Head,
  classes: string[],
  docString: string,
): Uint8Array {
  if (head.dim !== manifest.feature_dim)
    throw new Error(
      `the head takes ${head.dim} features; the backbone gives ${manifest.feature_dim}`,
    );
  if (head.classes !== classes.length) throw new Error('one class name per row of the head');
  const json = JSON.parse(new TextDecoder().decode(modelJsonBytes)) as TfjsModelJson;
  const constants = readWeights(
    json.weightsManifest.flatMap((group) => group.weights),
    weights,
  );
  const tfNodes = new Map(json.modelTopology.node.map((n) => [n.name, n]));
  const order = subgraph(tfNodes, manifest.feature_node);
  const prefix = commonPrefix(order.filter((n) => n.op !== 'Placeholder').map((n) => n.name));
  const onnxName = (tfName: string): string =>
    tfName === manifest.feature_node
      ? 'features'
      : tfName.startsWith(prefix)
        ? `backbone/${tfName.slice(prefix.length)}`
        : tfName;

  const nodes: Message[] = [];
  const initializers: Message[] = [];
  const written = new Set<string>();
  const initializer = (name: string, shape: number[], data: Float32Array | BigInt64Array) => {
    if (!written.has(name)) initializers.push(tensorProto(name, shape, data));
    written.add(name);
    return name;
  };
  const values = new Map<string, Value>();
  const value = (name: string): Value => values.get(name)!;
  const activationInput = (n: TfjsNode, index: number): Activation => {
    const v = value(inputsOf(n)[index]!);
    if (v.kind !== 'activation' || v.layout !== 'nchw')
      throw new Error(`${n.op} ${n.name}: input ${index} is not an image-shaped tensor`);
    return v;
  };
  const constantInput = (n: TfjsNode, index: number): Constant => {
    const v = value(inputsOf(n)[index]!);
    if (v.kind !== 'constant') throw new Error(`${n.op} ${n.name}: input ${index} is not a weight`);
    return v;
  };

  /** A fused op's tail (BiasAdd is the Conv's bias input; then an activation), as ONNX nodes. */
  const fusedTail = (n: TfjsNode, conv: string, out: string): void => {
    const [, ...activations] = (n.attr?.fused_ops?.list?.s ?? []).map(decodeString);
    if (activations.length === 0) {
      nodes.push(node('Identity', [conv], [out]));
    } else if (activations.length === 1 && activations[0] === 'Relu') {
      nodes.push(node('Relu', [conv], [out]));
    } else if (activations.length === 1 && activations[0] === 'Relu6') {
      const lo = initializer('relu6/min', [], Float32Array.of(0));
      const hi = initializer('relu6/max', [], Float32Array.of(6));
      nodes.push(node('Clip', [conv, lo, hi], [out]));
    } else {
      throw new Error(`${n.op} ${n.name}: fused ops ${activations.join(', ')} are not converted`);
    }
  };
  const fusedBias = (n: TfjsNode): Constant | undefined => {
    const fused = (n.attr?.fused_ops?.list?.s ?? []).map(decodeString);
    if (fused.length === 0) return undefined;
    if (fused[0] !== 'BiasAdd')
      throw new Error(`${n.op} ${n.name}: fused ops ${fused.join(', ')} are not converted`);
    return constantInput(n, 2);
  };

  const convolution = (n: TfjsNode, depthwise: boolean): Activation => {
    if (str(n, 'data_format', 'NHWC') !== 'NHWC')
      throw new Error(`${n.op} ${n.name}: only NHWC is converted`);
    const x = activationInput(n, 0);
    const filter = constantInput(n, 1);
    const [kh, kw, cin, last] = filter.shape as [number, number, number, number];
    if (cin !== x.shape[0])
      throw new Error(
        `${n.op} ${n.name}: the filter takes ${cin} channels, the input has ${x.shape[0]}`,
      );
    const strides = spatial(n, 'strides');
    const dilations = spatial(n, 'dilations', [1, 1, 1, 1]);
    const { pads, outHw } = windowPads(n, x.shape.slice(1), [kh, kw], strides, dilations);
    // HWIO → OIHW; depthwise [kh, kw, C, multiplier] → [C·multiplier, 1, kh, kw], group = C.
    const cout = depthwise ? cin * last : last;
    const kernel = new Float32Array(filter.data.length);
    const perOut = depthwise ? 1 : cin;
    for (let y = 0; y < kh; y++)
      for (let xx = 0; xx < kw; xx++)
        for (let i = 0; i < cin; i++)
          for (let j = 0; j < last; j++) {
            const from = ((y * kw + xx) * cin + i) * last + j;
            const [o, ii] = depthwise ? [i * last + j, 0] : [j, i];
            kernel[((o * perOut + ii) * kh + y) * kw + xx] = filter.data[from]!;
          }
    const inputs = [
      x.name,
      initializer(`${onnxName(filter.name)}/oihw`, [cout, perOut, kh, kw], kernel),
    ];
    const bias = fusedBias(n);
    if (bias !== undefined) {
      if (bias.data.length !== cout) throw new Error(`${n.op} ${n.name}: bias is not [${cout}]`);
      inputs.push(initializer(onnxName(bias.name), [cout], bias.data));
    }
    const out = onnxName(n.name);
    const attributes: Attribute[] = [
      ['kernel_shape', [kh, kw]],
      ['strides', strides],
      ['dilations', dilations],
      ['pads', pads],
    ];
    if (depthwise) attributes.push(['group', cin]);
    nodes.push(node('Conv', inputs, [`${out}/conv`], attributes));
    fusedTail(n, `${out}/conv`, out);
    return { kind: 'activation', name: out, layout: 'nchw', shape: [cout, ...outHw] };
  };

  const operand = (v: Value, other: Value): string => {
    if (v.kind === 'activation') return v.name;
    const channels = other.kind === 'activation' && other.layout === 'nchw';
    if (v.shape.length === 0 || (v.shape.length === 1 && v.shape[0] === 1))
      return initializer(onnxName(v.name), v.shape, v.data);
    if (v.shape.length === 1 && channels)
      // per-channel: [C] broadcasts over NCHW as [C, 1, 1]
      return initializer(`${onnxName(v.name)}/c11`, [v.shape[0]!, 1, 1], v.data);
    if (v.shape.length === 1 && other.kind === 'activation')
      return initializer(onnxName(v.name), v.shape, v.data);
    throw new Error(`constant ${v.name} of shape [${v.shape.join(', ')}] is not converted`);
  };

  const binary = (n: TfjsNode, op: 'Add' | 'Mul' | 'Sub'): Activation => {
    const [a, b] = inputsOf(n).map(value) as [Value, Value];
    const x = a.kind === 'activation' ? a : b;
    if (x.kind !== 'activation') throw new Error(`${n.op} ${n.name} has only constant inputs`);
    if (a.kind === 'activation' && b.kind === 'activation' && a.shape.join() !== b.shape.join())
      throw new Error(
        `${n.op} ${n.name}: inputs [${a.shape.join(', ')}] and [${b.shape.join(', ')}]`,
      );
    const out = onnxName(n.name);
    nodes.push(node(op, [operand(a, b), operand(b, a)], [out]));
    return { ...x, name: out };
  };

  const pool = (n: TfjsNode, op: 'AveragePool' | 'MaxPool'): Activation => {
    if (str(n, 'data_format', 'NHWC') !== 'NHWC')
      throw new Error(`${n.op} ${n.name}: only NHWC is converted`);
    const x = activationInput(n, 0);
    const kernel = spatial(n, 'ksize');
    const strides = spatial(n, 'strides');
    const { pads, outHw } = windowPads(n, x.shape.slice(1), kernel, strides, [1, 1]);
    const out = onnxName(n.name);
    // AveragePool's count_include_pad = 0 (the default) is TF's SAME average.
    nodes.push(
      node(
        op,
        [x.name],
        [out],
        [
          ['kernel_shape', kernel],
          ['strides', strides],
          ['pads', pads],
        ],
      ),
    );
    return { kind: 'activation', name: out, layout: 'nchw', shape: [x.shape[0]!, ...outHw] };
  };

  const squeeze = (n: TfjsNode): Activation => {
    const x = activationInput(n, 0);
    const nhwc = [x.shape[1]!, x.shape[2]!, x.shape[0]!]; // without the batch
    let dims = ints(n, 'squeeze_dims', []).map((d) => (d < 0 ? d + 4 : d));
    if (dims.length === 0) dims = [1, 2, 3].filter((d) => nhwc[d - 1] === 1);
    if (dims.includes(0)) throw new Error(`${n.op} ${n.name} squeezes the batch`);
    if (dims.some((d) => nhwc[d - 1] !== 1))
      throw new Error(`${n.op} ${n.name} squeezes an axis longer than 1`);
    const kept = [1, 2, 3].filter((d) => !dims.includes(d));
    // Only when at most one axis stays is NCHW's order of what remains TF's order.
    if (kept.length > 1) throw new Error(`${n.op} ${n.name} keeps ${kept.length} axes`);
    const toNchw = [0, 2, 3, 1];
    const axes = initializer(
      `${onnxName(n.name)}/axes`,
      [dims.length],
      BigInt64Array.from(dims.map((d) => BigInt(toNchw[d]!)).sort((p, q) => Number(p - q))),
    );
    const out = onnxName(n.name);
    nodes.push(node('Squeeze', [x.name, axes], [out]));
    return { kind: 'activation', name: out, layout: 'plain', shape: kept.map((d) => nhwc[d - 1]!) };
  };

  const size = manifest.input_size;
  for (const n of order) {
    let v: Value;
    switch (n.op) {
      case 'Placeholder': {
        if (n.name !== manifest.input_node)
          throw new Error(`the features depend on input ${n.name}, not ${manifest.input_node}`);
        const dims = n.attr?.shape?.shape?.dim?.map((d) => Number(d.size));
        if (dims !== undefined && dims.slice(1).join() !== [size, size, 3].join())
          throw new Error(`input ${n.name} is [${dims.join(', ')}], not [-1, ${size}, ${size}, 3]`);
        nodes.push(node('Transpose', ['images'], ['images_nchw'], [['perm', [0, 3, 1, 2]]]));
        v = { kind: 'activation', name: 'images_nchw', layout: 'nchw', shape: [3, size, size] };
        break;
      }
      case 'Const': {
        const c = constants.get(n.name);
        if (c === undefined) throw new Error(`constant ${n.name} is not in the weights manifest`);
        v = c;
        break;
      }
      case 'Conv2D':
      case '_FusedConv2D':
        v = convolution(n, false);
        break;
      case 'DepthwiseConv2dNative':
      case 'FusedDepthwiseConv2dNative':
        v = convolution(n, true);
        break;
      case 'Add':
      case 'AddV2':
        v = binary(n, 'Add');
        break;
      case 'Mul':
        v = binary(n, 'Mul');
        break;
      case 'Sub':
        v = binary(n, 'Sub');
        break;
      case 'AvgPool':
        v = pool(n, 'AveragePool');
        break;
      case 'MaxPool':
        v = pool(n, 'MaxPool');
        break;
      case 'Relu': {
        const x = value(inputsOf(n)[0]!) as Activation;
        nodes.push(node('Relu', [x.name], [onnxName(n.name)]));
        v = { ...x, name: onnxName(n.name) };
        break;
      }
      case 'Identity': {
        v = value(inputsOf(n)[0]!);
        if (n.name === manifest.feature_node && v.kind === 'activation') {
          nodes.push(node('Identity', [v.name], ['features']));
          v = { ...v, name: 'features' };
        }
        break;
      }
      case 'Squeeze':
        v = squeeze(n);
        break;
      default:
        throw new Error(`the backbone's ${n.op} node ${n.name} is not converted to ONNX`);
    }
    values.set(n.name, v);
  }
  const features = value(manifest.feature_node);
  if (
    features.kind !== 'activation' ||
    features.layout !== 'plain' ||
    features.shape.join() !== String(manifest.feature_dim)
  )
    throw new Error(`the feature node does not give [N, ${manifest.feature_dim}]`);

  // The head, as headToOnnx and heads.ts: unit(features) · weightᵀ + bias, then softmax.
  nodes.push(
    node(
      'ReduceL2',
      [features.name],
      ['feature_norm'],
      [
        ['axes', [1]],
        ['keepdims', 1],
      ],
    ),
    node(
      'Max',
      ['feature_norm', initializer('head/epsilon', [], Float32Array.of(1e-12))],
      ['safe_norm'],
    ),
    node('Div', [features.name, 'safe_norm'], ['unit_features']),
    node(
      'Gemm',
      [
        'unit_features',
        initializer('head/weight', [head.classes, head.dim], head.weight),
        initializer('head/bias', [head.classes], head.bias),
      ],
      ['logits'],
      [['transB', 1]],
    ),
    node('Softmax', ['logits'], ['probabilities'], [['axis', 1]]),
  );
  return model(
    {
      name: 'backbone_classifier',
      nodes,
      initializers,
      inputs: [valueInfo('images', ['batch', size, size, 3])],
      outputs: [
        valueInfo('probabilities', ['batch', head.classes]),
        valueInfo('logits', ['batch', head.classes]),
      ],
    },
    docString,
    {
      classes: JSON.stringify(classes),
      backbone: manifest.id,
      input: `images [N, ${size}, ${size}, 3] float32 RGB in [0, 1], NHWC`,
      preprocessing: JSON.stringify(manifest.preprocessing),
    },
  );
}
