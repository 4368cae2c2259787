// NumPy .npy (format 1.0) for float32 matrices: how the Node feature cache
// hands features to the Python factory (numpy.load reads it directly).

export function encodeNpyFloat32(data: Float32Array, shape: readonly number[]): Uint8Array {
  const header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  // Magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple of 64, ending in \n.
  const unpadded = 10 + header.length + 1;
  const padded = header + ' '.repeat((64 - (unpadded % 64)) % 64) + '\n';
  const out = new Uint8Array(10 + padded.length + data.byteLength);
  out.set([0x93, ...new TextEncoder().encode('NUMPY'), 1, 0], 0);
  new DataView(out.buffer).setUint16(8, padded.length, true);
  out.set(new TextEncoder().encode(padded), 10);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), 10 + padded.length);
  return out;
}

export function decodeNpyFloat32(bytes: Uint8Array): { data: Float32Array; shape: number[] } {
  const headerLength = new DataView(bytes.buffer, bytes.byteOffset).getUint16(8, true);
  const header = new TextDecoder().decode(bytes.subarray(10, 10 + headerLength));
  if (!header.includes("'descr': '<f4'") || header.includes("'fortran_order': True")) {
    throw new Error(`not a C-ordered float32 .npy: ${header.trim()}`);
  }
  const shape = (/'shape': \(([^)]*)\)/.exec(header)?.[1] ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map(Number);
  const body = bytes.slice(10 + headerLength);
  return { data: new Float32Array(body.buffer, 0, body.byteLength / 4), shape };
}
