import { describe, expect, it } from 'vitest';
import { array, integer, literal, object, parse, SchemaError, string } from './schema';

const graph = object({ file: string, bytes: integer, kind: literal('onnx') });

describe('strict schema', () => {
  it('parses a document with exactly the declared keys', () => {
    expect(parse(graph, { file: 'a.onnx', bytes: 3, kind: 'onnx' }, 'manifest')).toEqual({
      file: 'a.onnx',
      bytes: 3,
      kind: 'onnx',
    });
  });

  it('rejects an unknown key and names it', () => {
    expect(() => parse(graph, { file: 'a', bytes: 1, kind: 'onnx', extra: 1 }, 'manifest')).toThrow(
      'manifest: unknown keys extra',
    );
  });

  it('rejects a missing key and names its path', () => {
    expect(() => parse(object({ graph }), { graph: { file: 'a', kind: 'onnx' } }, 'm')).toThrow(
      'm.graph: missing key bytes',
    );
  });

  it('names the allowed values of an enumeration', () => {
    expect(() => parse(graph, { file: 'a', bytes: 1, kind: 'tflite' }, 'm')).toThrow(
      'm.kind: expected one of onnx, got tflite',
    );
  });

  it('reports the index of a bad array item', () => {
    const err = (() => {
      try {
        parse(array(integer), [1, 2.5], 'shape');
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(SchemaError);
    expect((err as Error).message).toBe('shape[1]: expected an integer, got 2.5');
  });
});
