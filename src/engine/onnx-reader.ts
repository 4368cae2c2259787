// Reading the structure of an ONNX model: its nodes (operator, inputs,
// outputs, integer attributes), initializer shapes and declared inputs and
// outputs. A minimal protobuf decoder for the messages of onnx/onnx.proto that
// this needs (field numbers as in onnx-writer.ts); tensor data is skipped.
// Used to count a graph's multiply-adds (graph-cost.ts).

export interface OnnxNode {
  op: string;
  inputs: string[];
  outputs: string[];
  /** Integer and integer-list attributes (group, transA, transB, …); others are left out. */
  attributes: Record<string, number | number[]>;
  /** The dims of a tensor attribute (a Constant's `value`). */
  tensorDims?: number[];
}

export interface OnnxValue {
  name: string;
  /** TensorProto.DataType: 1 float, 7 int64, … (0 when not declared). */
  elemType: number;
  /** Fixed sizes as numbers, named (dynamic) ones as strings. */
  dims: (number | string)[];
}

export interface OnnxGraph {
  nodes: OnnxNode[];
  /** Initializer name → dims. */
  initializers: Map<string, number[]>;
  inputs: OnnxValue[];
  outputs: OnnxValue[];
}

const text = new TextDecoder();

/** One protobuf field: its number, and a varint's value (as int64) or a length-delimited field's bytes. */
interface Field {
  field: number;
  wire: number;
  value: number;
  bytes: Uint8Array;
}

function* fields(bytes: Uint8Array): Generator<Field> {
  let i = 0;
  const varint = (): number => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      const b = bytes[i++];
      if (b === undefined) throw new Error('truncated ONNX model (varint)');
      result |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return Number(BigInt.asIntN(64, result));
      shift += 7n;
    }
  };
  const none = new Uint8Array();
  while (i < bytes.length) {
    const key = varint();
    const field = Math.floor(key / 8);
    const wire = key & 7;
    if (wire === 0) yield { field, wire, value: varint(), bytes: none };
    else if (wire === 1) {
      i += 8;
      yield { field, wire, value: 0, bytes: none };
    } else if (wire === 5) {
      i += 4;
      yield { field, wire, value: 0, bytes: none };
    } else if (wire === 2) {
      const length = varint();
      if (i + length > bytes.length) throw new Error('truncated ONNX model (field)');
      yield { field, wire, value: 0, bytes: bytes.subarray(i, i + length) };
      i += length;
    } else throw new Error(`not an ONNX model (protobuf wire type ${wire})`);
  }
}

/** The values of a repeated int64 field, packed or not (dims and attributes fit a double). */
function packed(f: Field): number[] {
  if (f.wire === 0) return [f.value];
  const out: number[] = [];
  let value = 0n;
  let shift = 0n;
  for (const b of f.bytes) {
    value |= BigInt(b & 0x7f) << shift;
    shift += 7n;
    if (b < 0x80) {
      out.push(Number(BigInt.asIntN(64, value)));
      value = 0n;
      shift = 0n;
    }
  }
  return out;
}

function tensorDims(bytes: Uint8Array): { name: string; dims: number[] } {
  let name = '';
  const dims: number[] = [];
  for (const f of fields(bytes)) {
    if (f.field === 1) dims.push(...packed(f));
    else if (f.field === 8) name = text.decode(f.bytes);
  }
  return { name, dims };
}

function valueInfo(bytes: Uint8Array): OnnxValue {
  const v: OnnxValue = { name: '', elemType: 0, dims: [] };
  for (const f of fields(bytes)) {
    if (f.field === 1) v.name = text.decode(f.bytes);
    else if (f.field === 2)
      for (const t of fields(f.bytes))
        if (t.field === 1)
          for (const tensor of fields(t.bytes)) {
            if (tensor.field === 1) v.elemType = tensor.value;
            else if (tensor.field === 2)
              for (const dim of fields(tensor.bytes)) {
                if (dim.field !== 1) continue;
                let size: number | string = '?';
                for (const d of fields(dim.bytes)) {
                  if (d.field === 1) size = d.value;
                  else if (d.field === 2) size = text.decode(d.bytes);
                }
                v.dims.push(size);
              }
          }
  }
  return v;
}

function nodeOf(bytes: Uint8Array): OnnxNode {
  const node: OnnxNode = { op: '', inputs: [], outputs: [], attributes: {} };
  for (const f of fields(bytes)) {
    if (f.field === 1) node.inputs.push(text.decode(f.bytes));
    else if (f.field === 2) node.outputs.push(text.decode(f.bytes));
    else if (f.field === 4) node.op = text.decode(f.bytes);
    else if (f.field === 5) {
      let name = '';
      let int: number | undefined;
      const ints: number[] = [];
      let dims: number[] | undefined;
      for (const a of fields(f.bytes)) {
        if (a.field === 1) name = text.decode(a.bytes);
        else if (a.field === 3) int = a.value;
        else if (a.field === 8) ints.push(...packed(a));
        else if (a.field === 5) dims = tensorDims(a.bytes).dims;
      }
      if (int !== undefined) node.attributes[name] = int;
      else if (ints.length > 0) node.attributes[name] = ints;
      if (dims !== undefined) node.tensorDims = dims;
    }
  }
  return node;
}

/** The graph of an ONNX model's bytes. */
export function readOnnxGraph(model: Uint8Array): OnnxGraph {
  const graph: OnnxGraph = { nodes: [], initializers: new Map(), inputs: [], outputs: [] };
  let found = false;
  for (const f of fields(model)) {
    if (f.field !== 7 || f.wire !== 2) continue;
    found = true;
    for (const g of fields(f.bytes)) {
      if (g.field === 1) graph.nodes.push(nodeOf(g.bytes));
      else if (g.field === 5) {
        const { name, dims } = tensorDims(g.bytes);
        graph.initializers.set(name, dims);
      } else if (g.field === 11) graph.inputs.push(valueInfo(g.bytes));
      else if (g.field === 12) graph.outputs.push(valueInfo(g.bytes));
    }
  }
  if (!found) throw new Error('not an ONNX model: it has no graph');
  // Inputs that are also initializers (older exporters list both) are not fed.
  graph.inputs = graph.inputs.filter((i) => !graph.initializers.has(i.name));
  return graph;
}
