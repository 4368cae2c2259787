import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { probeGraph, throughputGraph } from './backend-probe';
import { graphCost } from './graph-cost';
import { readOnnxGraph } from './onnx-reader';
import { headToOnnx, model, node, tensorProto, valueInfo } from './onnx-writer';

const tensor = (dims: number[]) =>
  new ort.Tensor('float32', new Float32Array(dims.reduce((a, b) => a * b, 1)).fill(0.5), dims);

describe('reading an ONNX graph', () => {
  it('gives its nodes, attributes, initializer shapes and declared inputs', () => {
    const graph = readOnnxGraph(headToOnnx(new Float32Array(6), new Float32Array(2), 2, 3));
    expect(graph.nodes.map((n) => n.op)).toEqual(['ReduceL2', 'Max', 'Div', 'Gemm']);
    expect(graph.nodes[0]!.attributes).toEqual({ axes: [1], keepdims: 1 });
    expect(graph.nodes[3]!.attributes).toEqual({ transB: 1 });
    expect(graph.initializers.get('weight')).toEqual([2, 3]);
    expect(graph.initializers.get('epsilon')).toEqual([]);
    expect(graph.inputs).toEqual([{ name: 'features', elemType: 1, dims: ['batch', 3] }]);
    expect(graph.outputs).toEqual([{ name: 'logits', elemType: 1, dims: ['batch', 2] }]);
  });

  it('refuses bytes that are not a model', () => {
    expect(() => readOnnxGraph(new Uint8Array([8, 1]))).toThrow('not an ONNX model');
  });
});

describe('multiply-adds of a graph at given input sizes', () => {
  it('counts chained MatMuls and a transposed Gemm as their shapes say', async () => {
    for (const g of [probeGraph(), throughputGraph(16, 32, 3)]) {
      const cost = await graphCost(ort, g.model, { x: tensor(g.input.dims) });
      expect(cost.multiplyAdds).toBe(g.multiplyAdds);
    }
    const head = headToOnnx(new Float32Array(5 * 7), new Float32Array(5), 5, 7);
    const cost = await graphCost(ort, head, { features: tensor([11, 7]) });
    expect(cost).toEqual({ multiplyAdds: 11 * 7 * 5, byOp: { Gemm: 385 }, uncounted: [] });
  });

  it('counts a convolution per output element, and a batched MatMul per batch', async () => {
    const conv = model(
      {
        name: 'conv',
        nodes: [
          node(
            'Conv',
            ['x', 'w'],
            ['y'],
            [
              ['kernel_shape', [3, 3]],
              ['pads', [1, 1, 1, 1]],
            ],
          ),
          node('MatMul', ['y', 'y'], ['z']),
        ],
        initializers: [tensorProto('w', [4, 3, 3, 3], new Float32Array(108))],
        inputs: [valueInfo('x', ['n', 3, 8, 8])],
        outputs: [valueInfo('z', ['n', 4, 8, 8])],
      },
      '',
    );
    const cost = await graphCost(ort, conv, { x: tensor([2, 3, 8, 8]) });
    // Conv: 2 × 4 × 8 × 8 outputs of 3 × 3 × 3; MatMul: 2 × 4 batches of 8 × 8 · 8 × 8.
    expect(cost.byOp).toEqual({ Conv: 2 * 4 * 64 * 27, MatMul: 2 * 4 * 8 * 8 * 8 });
  });
});
