// A minimal, strict DER (ITU-T X.690 §10) reader and writer: just enough to split a
// certificate into the exact bytes that were signed, and to build the few extensions no
// library writes the way the TCG profile wants. Everything else goes through
// @peculiar/x509. The reader accepts definite, minimally encoded lengths only and never
// reads past its input.
import { TrustlaunchError, type ErrorCode } from '../protocol/errors.js';

export const TAG = {
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/** One tag-length-value element: `bytes` is the whole element, `content` its value. */
export interface Tlv {
  readonly tag: number;
  readonly bytes: Buffer;
  readonly content: Buffer;
}

/** Reads the element that starts at `offset`; single-byte tags only (all X.509 needs). */
export function readTlv(input: Buffer, offset: number, code: ErrorCode): Tlv {
  const fail = (why: string): never => {
    throw new TrustlaunchError(code, `DER: ${why} at offset ${offset}`);
  };
  if (offset + 2 > input.length) fail('truncated header');
  const tag = input[offset] as number;
  if ((tag & 0x1f) === 0x1f) fail('multi-byte tags are not supported');
  const first = input[offset + 1] as number;
  let length: number;
  let header = 2;
  if (first < 0x80) {
    length = first;
  } else {
    const count = first & 0x7f;
    // 0x80 is BER's indefinite length; more than 3 length bytes exceeds any bound we allow.
    if (count === 0 || count > 3) fail('indefinite or oversized length');
    if (offset + 2 + count > input.length) fail('truncated length');
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + (input[offset + 2 + i] as number);
    if (length < 0x80 || (input[offset + 2] as number) === 0) fail('non-minimal length encoding');
    header += count;
  }
  const end = offset + header + length;
  if (end > input.length) fail('length runs past the end of the input');
  return { tag, bytes: input.subarray(offset, end), content: input.subarray(offset + header, end) };
}

/** The children of a constructed element, which must exactly fill its content. */
export function readChildren(parent: Tlv, code: ErrorCode): Tlv[] {
  const children: Tlv[] = [];
  let offset = 0;
  while (offset < parent.content.length) {
    const child = readTlv(parent.content, offset, code);
    children.push(child);
    offset += child.bytes.length;
  }
  return children;
}

/** Reads exactly one element that spans all of `input` (no trailing bytes). */
export function readWhole(input: Buffer, code: ErrorCode): Tlv {
  const tlv = readTlv(input, 0, code);
  if (tlv.bytes.length !== input.length) {
    throw new TrustlaunchError(code, `DER: ${input.length - tlv.bytes.length} trailing bytes`);
  }
  return tlv;
}

// --- writer --------------------------------------------------------------------

function encodeLength(length: number): Buffer {
  if (length < 0x80) return Buffer.from([length]);
  const bytes: number[] = [];
  for (let n = length; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

export function tlv(tag: number, ...content: Uint8Array[]): Buffer {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), encodeLength(body.length), body]);
}

export function derOid(dotted: string): Buffer {
  const arcs = dotted.split('.').map((a) => Number.parseInt(a, 10));
  const [a0, a1, ...rest] = arcs;
  if (a0 === undefined || a1 === undefined || arcs.some((a) => !Number.isSafeInteger(a) || a < 0)) {
    throw new TypeError(`not an object identifier: ${dotted}`);
  }
  const out: number[] = [a0 * 40 + a1];
  for (const arc of rest) {
    const base128: number[] = [arc & 0x7f];
    for (let n = Math.floor(arc / 128); n > 0; n = Math.floor(n / 128)) base128.unshift(0x80 | (n & 0x7f));
    out.push(...base128);
  }
  return tlv(TAG.OID, Buffer.from(out));
}

export function derUtf8(text: string): Buffer {
  return tlv(TAG.UTF8_STRING, Buffer.from(text, 'utf8'));
}

/** A non-negative INTEGER from a small number. */
export function derUint(value: number): Buffer {
  const bytes: number[] = [];
  for (let n = value; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff);
  if (bytes.length === 0 || ((bytes[0] as number) & 0x80) !== 0) bytes.unshift(0);
  return tlv(TAG.INTEGER, Buffer.from(bytes));
}

/** Decodes an OBJECT IDENTIFIER's content octets to dotted form. */
export function decodeOid(content: Buffer, code: ErrorCode): string {
  if (content.length === 0 || content.length > 64 || ((content[content.length - 1] as number) & 0x80) !== 0) {
    throw new TrustlaunchError(code, 'DER: malformed object identifier');
  }
  const arcs: number[] = [];
  let value = 0;
  for (let i = 0; i < content.length; i++) {
    const byte = content[i] as number;
    if (value === 0 && byte === 0x80) throw new TrustlaunchError(code, 'DER: non-minimal object identifier arc');
    value = value * 128 + (byte & 0x7f);
    if (value > Number.MAX_SAFE_INTEGER / 128) throw new TrustlaunchError(code, 'DER: object identifier arc too large');
    if ((byte & 0x80) === 0) {
      if (arcs.length === 0) arcs.push(value < 80 ? Math.floor(value / 40) : 2, value < 80 ? value % 40 : value - 80);
      else arcs.push(value);
      value = 0;
    }
  }
  return arcs.join('.');
}
