// A bounded reader for TPM 2.0 wire encodings (Part 1 §18 "Marshaling": big-endian,
// TPM2B = UINT16 size ‖ bytes). Every read checks the remaining length first, every size
// field is bounded before anything is allocated, and every failure is one TrustlaunchError
// (TPM_PARSE_ERROR unless the caller names another code, e.g. EVENT_LOG_MALFORMED for the
// little-endian TCG event log). 64-bit fields are BigInt: a Number would lose clock bits.
import { TrustlaunchError, type ErrorCode } from '../../protocol/errors.js';

export interface ReaderOptions {
  /** The error code every failure carries. */
  readonly code?: ErrorCode;
  /** What is being parsed, for messages ("TPMS_ATTEST"). */
  readonly what?: string;
}

export class TpmReader {
  readonly #view: DataView;
  readonly #bytes: Uint8Array;
  readonly #code: ErrorCode;
  readonly #what: string;
  #offset = 0;

  constructor(bytes: Uint8Array, options: ReaderOptions = {}) {
    this.#bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.#code = options.code ?? 'TPM_PARSE_ERROR';
    this.#what = options.what ?? 'TPM structure';
  }

  get offset(): number {
    return this.#offset;
  }

  get remaining(): number {
    return this.#bytes.length - this.#offset;
  }

  /** Throws the reader's typed error, naming the structure, the field and the offset. */
  fail(field: string, why: string): never {
    throw new TrustlaunchError(this.#code, `${this.#what}: ${field} at offset ${this.#offset}: ${why}`, {
      detail: { field, offset: this.#offset },
    });
  }

  #need(n: number, field: string): number {
    if (n > this.remaining) this.fail(field, `needs ${n} bytes, ${this.remaining} left`);
    const at = this.#offset;
    this.#offset += n;
    return at;
  }

  u8(field: string): number {
    return this.#view.getUint8(this.#need(1, field));
  }

  u16(field: string): number {
    return this.#view.getUint16(this.#need(2, field));
  }

  u32(field: string): number {
    return this.#view.getUint32(this.#need(4, field));
  }

  u64(field: string): bigint {
    return this.#view.getBigUint64(this.#need(8, field));
  }

  u16le(field: string): number {
    return this.#view.getUint16(this.#need(2, field), true);
  }

  u32le(field: string): number {
    return this.#view.getUint32(this.#need(4, field), true);
  }

  /** A copy of the next `n` bytes (copies, so a parsed value never aliases the input). */
  bytes(n: number, field: string): Uint8Array {
    const at = this.#need(n, field);
    return this.#bytes.slice(at, at + n);
  }

  /** A TPM2B: UINT16 size (at most `max`), then that many bytes. */
  sized(field: string, max: number): Uint8Array {
    const size = this.u16(`${field}.size`);
    if (size > max) this.fail(field, `size ${size} exceeds the bound ${max}`);
    return this.bytes(size, field);
  }

  /** A count field (UINT32) bounded by `max` before any array is allocated. */
  count(field: string, max: number): number {
    const n = this.u32(field);
    if (n > max) this.fail(field, `count ${n} exceeds the bound ${max}`);
    return n;
  }

  /** A sub-reader over the next `n` bytes, for structures nested inside a size (TPM2B_PUBLIC, TPM2B_ATTEST). */
  sub(n: number, field: string, what?: string): TpmReader {
    const at = this.#need(n, field);
    return new TpmReader(this.#bytes.subarray(at, at + n), { code: this.#code, what: what ?? `${this.#what}.${field}` });
  }

  /** Asserts that every byte was consumed: trailing bytes are an error, not padding. */
  end(): void {
    if (this.remaining !== 0) this.fail('end', `${this.remaining} trailing bytes`);
  }
}

/** Parses `bytes` as exactly one structure with `read`; trailing bytes are rejected. */
export function parseWhole<T>(bytes: Uint8Array, what: string, read: (r: TpmReader) => T, code?: ErrorCode): T {
  const r = new TpmReader(bytes, code === undefined ? { what } : { what, code });
  const value = read(r);
  r.end();
  return value;
}
