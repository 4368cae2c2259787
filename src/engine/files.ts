// Reading release files the same way everywhere: a FileSource maps a file name
// inside a release folder to its bytes (fetch in the page, fs in Node).

export type FileSource = (name: string) => Promise<Uint8Array>;

export async function readJson(source: FileSource, name: string): Promise<unknown> {
  const bytes = await source(name);
  try {
    return JSON.parse(new TextDecoder().decode(bytes)) as unknown;
  } catch (error) {
    throw new Error(`${name} is not valid JSON: ${(error as Error).message}`, { cause: error });
  }
}

export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Reads `name` and checks it is the file the manifest names (size and sha256). */
export async function readVerified(
  source: FileSource,
  name: string,
  expected: { bytes: number; sha256: string },
): Promise<Uint8Array> {
  const bytes = await source(name);
  if (bytes.byteLength !== expected.bytes) {
    throw new Error(`${name} has ${bytes.byteLength} bytes, the manifest says ${expected.bytes}`);
  }
  const sha256 = await sha256Hex(bytes);
  if (sha256 !== expected.sha256) {
    throw new Error(`${name} has sha256 ${sha256}, the manifest says ${expected.sha256}`);
  }
  return bytes;
}

/** A FileSource over HTTP, relative to `baseUrl` (a release folder served by the app). */
export function fetchSource(baseUrl: string, fetchImpl: typeof fetch = fetch): FileSource {
  const base = baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`;
  return async (name) => {
    const url = new URL(name, new URL(base, globalThis.location?.href ?? 'http://localhost/'));
    const response = await fetchImpl(url);
    if (!response.ok) throw new Error(`could not load ${url.pathname}: HTTP ${response.status}`);
    return new Uint8Array(await response.arrayBuffer());
  };
}
