// How much arithmetic a graph does: the multiply-adds of its MatMul, Gemm and
// Conv nodes at given input sizes. The sizes of the values between nodes come
// from running the graph once with them exposed as outputs (onnx-writer's
// withOutputs), so no shape inference is written here; the elementwise nodes
// (activations, norms, adds) are left out, a few per cent of these graphs.

import type { InferenceSession, Tensor } from 'onnxruntime-common';
import { readOnnxGraph, type OnnxGraph, type OnnxNode } from './onnx-reader';
import { withOutputs } from './onnx-writer';
import type { OrtPackage } from './runtime';

export interface GraphCost {
  multiplyAdds: number;
  /** Multiply-adds by operator. */
  byOp: Record<string, number>;
  /** Operators that do arithmetic of their own but are not counted here (Einsum, Attention, …). */
  uncounted: string[];
}

const COUNTED = new Set(['MatMul', 'Gemm', 'Conv', 'ConvTranspose']);
const NOT_COUNTED =
  /^(Einsum|Attention|MultiHeadAttention|LSTM|GRU|RNN|QLinear|MatMulInteger|ConvInteger)/;

const product = (dims: readonly number[]) => dims.reduce((a, b) => a * b, 1);

/** The values each counted node needs the shape of. */
function shapesNeeded(node: OnnxNode): string[] {
  if (node.op === 'Conv') return [node.outputs[0]!, node.inputs[1]!];
  if (COUNTED.has(node.op)) return [node.inputs[0]!, node.inputs[1]!];
  return [];
}

function nodeMultiplyAdds(node: OnnxNode, shape: (name: string) => readonly number[]): number {
  const a = shape(node.inputs[0]!);
  const b = shape(node.inputs[1]!);
  switch (node.op) {
    case 'MatMul': {
      // [..., M, K] · [..., K, N], batch dimensions broadcast; a vector is [1, K] or [K, 1].
      const left = a.length === 1 ? [1, a[0]!] : a;
      const right = b.length === 1 ? [b[0]!, 1] : b;
      const batchA = left.slice(0, -2);
      const batchB = right.slice(0, -2);
      const rank = Math.max(batchA.length, batchB.length);
      let batch = 1;
      for (let i = 0; i < rank; i++)
        batch *= Math.max(
          batchA[batchA.length - rank + i] ?? 1,
          batchB[batchB.length - rank + i] ?? 1,
        );
      return batch * left.at(-2)! * left.at(-1)! * right.at(-1)!;
    }
    case 'Gemm': {
      const transA = node.attributes.transA === 1;
      const transB = node.attributes.transB === 1;
      const m = transA ? a[1]! : a[0]!;
      const k = transA ? a[0]! : a[1]!;
      const n = transB ? b[0]! : b[1]!;
      return m * k * n;
    }
    case 'Conv':
      // Every output element: (C_in / group) × kernel multiply-adds; W is [C_out, C_in/group, k…].
      return product(shape(node.outputs[0]!)) * product(shape(node.inputs[1]!).slice(1));
    case 'ConvTranspose':
      // Every input element spreads over (C_out / group) × kernel outputs; W is [C_in, C_out/group, k…].
      return product(a) * product(b.slice(1));
    default:
      return 0;
  }
}

/** Multiply-adds of `graph`, given every needed value's shape. */
export function countMultiplyAdds(
  graph: OnnxGraph,
  shapeOf: (name: string) => readonly number[] | undefined,
): GraphCost {
  const shape = (name: string) => {
    const dims = shapeOf(name);
    if (dims === undefined) throw new Error(`no shape known for ${name}`);
    return dims;
  };
  const cost: GraphCost = { multiplyAdds: 0, byOp: {}, uncounted: [] };
  for (const node of graph.nodes) {
    if (NOT_COUNTED.test(node.op) && !cost.uncounted.includes(node.op))
      cost.uncounted.push(node.op);
    if (!COUNTED.has(node.op)) continue;
    const macs = nodeMultiplyAdds(node, shape);
    cost.multiplyAdds += macs;
    cost.byOp[node.op] = (cost.byOp[node.op] ?? 0) + macs;
  }
  return cost;
}

/**
 * Multiply-adds of one run of `model` on `feeds`: the graph is run once (on the
 * package's default backend) with the values the count needs exposed, to learn
 * their sizes at these inputs.
 */
export async function graphCost(
  ort: OrtPackage,
  model: Uint8Array,
  feeds: Record<string, Tensor>,
): Promise<GraphCost> {
  const graph = readOnnxGraph(model);
  const known = new Map<string, readonly number[]>();
  for (const [name, dims] of graph.initializers) known.set(name, dims);
  for (const node of graph.nodes)
    if (node.op === 'Constant' && node.tensorDims !== undefined)
      known.set(node.outputs[0]!, node.tensorDims);
  for (const [name, tensor] of Object.entries(feeds)) known.set(name, tensor.dims);
  const declared = new Set(graph.outputs.map((o) => o.name));
  const needed = [...new Set(graph.nodes.flatMap(shapesNeeded))].filter((n) => !known.has(n));
  const exposed = needed.filter((n) => !declared.has(n));
  let session: InferenceSession | undefined;
  try {
    session = await ort.InferenceSession.create(withOutputs(model, exposed));
    const outputs = await session.run(feeds);
    for (const name of needed) {
      const value = outputs[name];
      if (value !== undefined) known.set(name, value.dims);
    }
  } finally {
    await session?.release();
  }
  return countMultiplyAdds(graph, (name) => known.get(name));
}
