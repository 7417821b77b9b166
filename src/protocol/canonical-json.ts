// Canonical JSON per RFC 8785 (JCS): the bytes every signature and hash covers.
// ECMAScript's Number-to-string and JSON string escaping are exactly what JCS
// specifies (RFC 8785 §3.2.2.2, §3.2.2.3); what JCS adds is key ordering by UTF-16
// code units and the refusal of values I-JSON (RFC 7493) does not allow.
import { TrustlaunchError } from './errors.js';

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

const LONE_SURROGATE = /\p{Surrogate}/u;

function fail(path: string, why: string): never {
  throw new TrustlaunchError('MALFORMED_JSON', `${path || '$'}: ${why}`);
}

function serializeString(s: string, path: string): string {
  // With the u flag a well-formed surrogate pair is one code point and does not match.
  if (LONE_SURROGATE.test(s)) fail(path, 'string holds a lone surrogate (not I-JSON)');
  return JSON.stringify(s);
}

function serialize(value: unknown, path: string, depth: number): string {
  if (depth > 64) fail(path, 'nesting deeper than 64');
  switch (typeof value) {
    case 'string':
      return serializeString(value, path);
    case 'number':
      if (!Number.isFinite(value)) fail(path, `number ${String(value)} is not allowed`);
      return Object.is(value, -0) ? '0' : String(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'object': {
      if (value === null) return 'null';
      if (Array.isArray(value)) {
        return `[${value.map((v, i) => serialize(v, `${path}[${i}]`, depth + 1)).join(',')}]`;
      }
      const proto = Object.getPrototypeOf(value) as unknown;
      if (proto !== Object.prototype && proto !== null) fail(path, 'only plain objects are JSON objects');
      const entries = Object.entries(value as Record<string, unknown>);
      // Default sort compares UTF-16 code units, exactly as RFC 8785 §3.2.3 asks.
      entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      const members = entries.map(([k, v]) => {
        if (v === undefined) fail(`${path}.${k}`, 'undefined is not a JSON value');
        return `${serializeString(k, path)}:${serialize(v, `${path}.${k}`, depth + 1)}`;
      });
      return `{${members.join(',')}}`;
    }
    default:
      return fail(path, `${typeof value} is not a JSON value`);
  }
}

/** The canonical JSON text of a value (RFC 8785). */
export function canonicalize(value: unknown): string {
  return serialize(value, '', 0);
}

/** The canonical JSON of a value as UTF-8 bytes. */
export function canonicalBytes(value: unknown): Buffer {
  return Buffer.from(canonicalize(value), 'utf8');
}
