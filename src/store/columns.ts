// Column conventions that read and write the same on SQLite and PostgreSQL
// (docs/storage.md): use COLUMN in migrations and these codecs in queries.
import { sql, type RawBuilder } from 'kysely';
import { fromBase64url, toBase64url } from '../protocol/base64url.js';
import { canonicalize, type JsonValue } from '../protocol/canonical-json.js';
import { TrustlaunchError } from '../protocol/errors.js';

/** Column types for `addColumn(name, COLUMN.x)`: each maps to one type on both dialects. */
export const COLUMN = {
  /** Ids: text, generated in code (no autoincrement: its syntax differs per dialect). */
  id: 'text',
  text: 'text',
  /** Times: integer milliseconds since the Unix epoch (int8 on PostgreSQL, read back as numbers). */
  time: 'bigint',
  /** Other integers that may pass 2^31 (sizes, counters). */
  int: 'bigint',
  /** Booleans: 0 or 1. */
  bool: 'integer',
  /** Binary: base64url text without padding. */
  bytes: 'text',
  /** JSON: canonical (RFC 8785) text. */
  json: 'text',
} as const;

/**
 * `check (column in ('a', 'b'))` for `addColumn(…, (c) => c.check(oneOf(…)))`: a text column
 * that holds one of a fixed set (enums differ per dialect). The values are constants in
 * code, never input; quotes are doubled all the same.
 */
export function oneOf(column: string, values: readonly string[]): RawBuilder<unknown> {
  return sql.raw(`${column} in (${values.map((v) => `'${v.replaceAll("'", "''")}'`).join(', ')})`);
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const MIN_SAFE = -MAX_SAFE;

/**
 * An integer read from the database as a number. Both drivers already return numbers
 * (openDatabase installs an int8 parser on PostgreSQL); this also accepts the
 * `string | number | bigint` Kysely types aggregates as, and refuses anything that is not a
 * safe integer rather than round it.
 */
export function toInt(value: unknown): number {
  let n: number | undefined;
  if (typeof value === 'number') n = value;
  else if (typeof value === 'bigint') n = value >= MIN_SAFE && value <= MAX_SAFE ? Number(value) : undefined;
  else if (typeof value === 'string' && /^-?\d{1,16}$/.test(value)) n = Number(value);
  if (n === undefined || !Number.isSafeInteger(n)) {
    throw new TrustlaunchError('INTERNAL', `database value ${String(value)} is not a safe integer`);
  }
  return n;
}

/** A time column's value: milliseconds since the epoch. */
export function toMillis(date: Date | number): number {
  const ms = typeof date === 'number' ? date : date.getTime();
  if (!Number.isSafeInteger(ms)) throw new TypeError(`time ${String(date)} is not an integer number of milliseconds`);
  return ms;
}

export function encodeBool(value: boolean): 0 | 1 {
  return value ? 1 : 0;
}

export function decodeBool(value: unknown): boolean {
  const n = toInt(value);
  if (n !== 0 && n !== 1) throw new TrustlaunchError('INTERNAL', `database boolean is ${n}, not 0 or 1`);
  return n === 1;
}

export function encodeBytes(bytes: Uint8Array): string {
  return toBase64url(bytes);
}

export function decodeBytes(text: string): Buffer {
  return fromBase64url(text, 'INTERNAL');
}

/** Canonical JSON text: equal values store as equal text, so they compare and hash alike. */
export function encodeJson(value: unknown): string {
  return canonicalize(value);
}

export function decodeJson(text: string): JsonValue {
  try {
    return JSON.parse(text) as JsonValue;
  } catch (e) {
    throw new TrustlaunchError('INTERNAL', 'a JSON column holds text that is not JSON', { cause: e });
  }
}
