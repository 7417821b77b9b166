// The writing half of the TPM 2.0 wire encoding (Part 1 §18): big-endian integers,
// TPM2B = UINT16 size ‖ bytes, and back-patched sizes for nested structures so a command
// client can marshal headers (commandSize) and authorization areas the same way.

export class TpmWriter {
  #buf: Buffer;
  #length = 0;

  constructor(initialCapacity = 256) {
    this.#buf = Buffer.alloc(initialCapacity);
  }

  get length(): number {
    return this.#length;
  }

  /** Makes room for `n` bytes and returns where they go. Call it BEFORE touching #buf: it may replace the buffer. */
  #reserve(n: number): number {
    const at = this.#length;
    if (at + n > this.#buf.length) {
      const next = Buffer.alloc(Math.max(this.#buf.length * 2, at + n));
      this.#buf.copy(next, 0, 0, at);
      this.#buf = next;
    }
    this.#length += n;
    return at;
  }

  #checkUint(value: number, bits: number, field: string): void {
    if (!Number.isInteger(value) || value < 0 || value >= 2 ** bits) {
      throw new RangeError(`${field}: ${value} is not a UINT${bits}`);
    }
  }

  u8(value: number, field = 'UINT8'): this {
    this.#checkUint(value, 8, field);
    const at = this.#reserve(1);
    this.#buf.writeUInt8(value, at);
    return this;
  }

  u16(value: number, field = 'UINT16'): this {
    this.#checkUint(value, 16, field);
    const at = this.#reserve(2);
    this.#buf.writeUInt16BE(value, at);
    return this;
  }

  u32(value: number, field = 'UINT32'): this {
    this.#checkUint(value, 32, field);
    const at = this.#reserve(4);
    this.#buf.writeUInt32BE(value, at);
    return this;
  }

  u64(value: bigint, field = 'UINT64'): this {
    if (value < 0n || value >= 1n << 64n) throw new RangeError(`${field}: ${value} is not a UINT64`);
    const at = this.#reserve(8);
    this.#buf.writeBigUInt64BE(value, at);
    return this;
  }

  u16le(value: number, field = 'UINT16'): this {
    this.#checkUint(value, 16, field);
    const at = this.#reserve(2);
    this.#buf.writeUInt16LE(value, at);
    return this;
  }

  u32le(value: number, field = 'UINT32'): this {
    this.#checkUint(value, 32, field);
    const at = this.#reserve(4);
    this.#buf.writeUInt32LE(value, at);
    return this;
  }

  bytes(data: Uint8Array): this {
    const at = this.#reserve(data.length);
    this.#buf.set(data, at);
    return this;
  }

  /** A TPM2B: UINT16 size, then the bytes; `max` is the structure's bound. */
  sized(data: Uint8Array, max = 0xffff, field = 'TPM2B'): this {
    if (data.length > max) throw new RangeError(`${field}: ${data.length} bytes exceed the bound ${max}`);
    return this.u16(data.length, field).bytes(data);
  }

  /** UINT16 size of whatever `body` writes, then that body (TPM2B_PUBLIC, TPM2B_SENSITIVE_CREATE, …). */
  sizedBlock(body: (w: this) => void, field = 'TPM2B'): this {
    const at = this.#reserve(2);
    body(this);
    const size = this.#length - at - 2;
    this.#checkUint(size, 16, field);
    this.#buf.writeUInt16BE(size, at);
    return this;
  }

  /** UINT32 size of whatever `body` writes (the authorization area of a command, Part 1 §18.7). */
  sized32Block(body: (w: this) => void): this {
    const at = this.#reserve(4);
    body(this);
    this.#buf.writeUInt32BE(this.#length - at - 4, at);
    return this;
  }

  /** Overwrites a UINT32 written earlier at `offset` (commandSize in a command header). */
  patchU32(offset: number, value: number): this {
    if (offset < 0 || offset + 4 > this.#length) throw new RangeError(`patch at ${offset} is outside the written bytes`);
    this.#checkUint(value, 32, 'patch');
    this.#buf.writeUInt32BE(value, offset);
    return this;
  }

  /** A copy of the bytes written so far. */
  finish(): Buffer {
    return Buffer.from(this.#buf.subarray(0, this.#length));
  }
}

/** Marshals one value with `write` into fresh bytes. */
export function marshal<T>(value: T, write: (w: TpmWriter, v: T) => void): Buffer {
  const w = new TpmWriter();
  write(w, value);
  return w.finish();
}
