// safetensors (https://github.com/huggingface/safetensors): an 8-byte
// little-endian header length, a JSON header naming each tensor's dtype, shape
// and byte range, then the raw little-endian data. Only float32 here, which is
// all the generated networks use.

export interface NamedTensor {
  shape: number[];
  data: Float32Array;
}

export function encodeSafetensors(
  tensors: Record<string, NamedTensor>,
  metadata: Record<string, string> = {},
): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const [name, { shape, data }] of Object.entries(tensors)) {
    const count = shape.reduce((a, b) => a * b, 1);
    if (count !== data.length)
      throw new Error(`tensor ${name} has ${data.length} values but shape [${shape.join(', ')}]`);
    header[name] = { dtype: 'F32', shape, data_offsets: [offset, offset + data.byteLength] };
    offset += data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + json.length) % 8)) % 8); // data starts 8-byte aligned
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let at = 8 + headerBytes.length;
  for (const { data } of Object.values(tensors)) {
    out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), at);
    at += data.byteLength;
  }
  return out;
}

export function decodeSafetensors(bytes: Uint8Array): {
  tensors: Record<string, NamedTensor>;
  metadata: Record<string, string>;
} {
  if (bytes.byteLength < 8)
    throw new Error('not a safetensors file: shorter than its header length');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const length = Number(view.getBigUint64(0, true));
  if (8 + length > bytes.byteLength)
    throw new Error('not a safetensors file: header runs past the end');
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + length))) as Record<
      string,
      unknown
    >;
  } catch {
    throw new Error('not a safetensors file: its header is not JSON');
  }
  const tensors: Record<string, NamedTensor> = {};
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = entry as Record<string, string>;
      continue;
    }
    const { dtype, shape, data_offsets } = entry as {
      dtype: string;
      shape: number[];
      data_offsets: [number, number];
    };
    if (dtype !== 'F32') throw new Error(`tensor ${name} is ${dtype}; only F32 is supported`);
    const [begin, end] = data_offsets;
    const raw = bytes.slice(8 + length + begin, 8 + length + end);
    tensors[name] = {
      shape,
      data: new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4),
    };
  }
  return { tensors, metadata };
}
