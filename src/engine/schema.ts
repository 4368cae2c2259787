// A strict schema for the JSON the factory writes (snake_case keys, exactly as
// written): unknown and missing keys are errors, and every error names its path.

export type Schema<T> = (value: unknown, path: string) => T;

export class SchemaError extends Error {
  constructor(path: string, problem: string) {
    super(`${path}: ${problem}`);
    this.name = 'SchemaError';
  }
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return `a ${typeof value}`;
}

export const number: Schema<number> = (value, path) => {
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new SchemaError(path, `expected a finite number, got ${describe(value)}`);
  }
  return value;
};

export const integer: Schema<number> = (value, path) => {
  const n = number(value, path);
  if (!Number.isInteger(n)) throw new SchemaError(path, `expected an integer, got ${n}`);
  return n;
};

export const string: Schema<string> = (value, path) => {
  if (typeof value !== 'string') {
    throw new SchemaError(path, `expected a string, got ${describe(value)}`);
  }
  return value;
};

export const boolean: Schema<boolean> = (value, path) => {
  if (typeof value !== 'boolean') {
    throw new SchemaError(path, `expected true or false, got ${describe(value)}`);
  }
  return value;
};

/** `item`, or null (JSON's null; Python's None). */
export function nullable<T>(item: Schema<T>): Schema<T | null> {
  return (value, path) => (value === null ? null : item(value, path));
}

export function literal<const L extends string>(...allowed: L[]): Schema<L> {
  return (value, path) => {
    if (typeof value !== 'string' || !(allowed as string[]).includes(value)) {
      throw new SchemaError(path, `expected one of ${allowed.join(', ')}, got ${String(value)}`);
    }
    return value as L;
  };
}

export function array<T>(item: Schema<T>): Schema<T[]> {
  return (value, path) => {
    if (!Array.isArray(value))
      throw new SchemaError(path, `expected an array, got ${describe(value)}`);
    return value.map((v, i) => item(v, `${path}[${i}]`));
  };
}

export function record<T>(item: Schema<T>): Schema<Record<string, T>> {
  return (value, path) => {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new SchemaError(path, `expected an object, got ${describe(value)}`);
    }
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, item(v, `${path}.${k}`)] as const),
    );
  };
}

type Shape = Record<string, Schema<unknown>>;
type Parsed<S extends Shape> = { [K in keyof S]: S[K] extends Schema<infer T> ? T : never };

export function object<S extends Shape>(shape: S): Schema<Parsed<S>> {
  return (value, path) => {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new SchemaError(path, `expected an object, got ${describe(value)}`);
    }
    const input = value as Record<string, unknown>;
    const unknownKeys = Object.keys(input).filter((k) => !(k in shape));
    if (unknownKeys.length > 0) {
      throw new SchemaError(path, `unknown keys ${unknownKeys.join(', ')}`);
    }
    const out: Record<string, unknown> = {};
    for (const [key, field] of Object.entries(shape)) {
      if (!(key in input)) throw new SchemaError(path, `missing key ${key}`);
      out[key] = field(input[key], `${path}.${key}`);
    }
    return out as Parsed<S>;
  };
}

/** Parses `value` with `schema`, naming the document in errors. */
export function parse<T>(schema: Schema<T>, value: unknown, documentName: string): T {
  return schema(value, documentName);
}
