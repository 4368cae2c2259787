// Running a whole generated CNN (its ONNX, onnx-writer.ts) in Node.
import * as ort from 'onnxruntime-node';

/** Logits [count × classes] of the CNN graph on images [count, 1, 28, 28] (or its `features`). */
export async function cnnLogits(
  model: Uint8Array,
  images: Float32Array,
  count: number,
  output: 'logits' | 'features' = 'logits',
): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(model);
  try {
    const out = await session.run({
      images: new ort.Tensor('float32', images, [count, 1, 28, 28]),
    });
    return out[output]!.data as Float32Array;
  } finally {
    await session.release();
  }
}
