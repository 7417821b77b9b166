// OpenSSH public keys: the `type base64 [comment]` line and the key blob inside it
// (RFC 4253 §6.6 string encoding; RFC 8709 §4 ssh-ed25519; RFC 5656 §3.1
// ecdsa-sha2-nistp256). Only the two types the project uses are accepted; ssh-rsa,
// ssh-dss and everything else are refused with MALFORMED_KEY.
import type { KeyObject } from 'node:crypto';
import { TrustlaunchError } from '../protocol/errors.js';
import { ecPublicKeyFromXY, ecPublicKeyXY, ecCurve, ed25519PublicBytes, ed25519PublicKeyFromBytes } from './keys.js';

export type SshKeyType = 'ssh-ed25519' | 'ecdsa-sha2-nistp256';

export interface SshPublicKey {
  readonly type: SshKeyType;
  readonly key: KeyObject;
  /** The wire-format key blob the line's base64 encodes. */
  readonly blob: Buffer;
  readonly comment: string | undefined;
}

const MAX_LINE_CHARS = 2048;
const MAX_BLOB_BYTES = 512;

function malformed(message: string): TrustlaunchError {
  return new TrustlaunchError('MALFORMED_KEY', message);
}

/** RFC 4251 §5 `string`: uint32 length ‖ bytes. */
export function sshString(value: Uint8Array | string): Buffer {
  const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : Buffer.from(value);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(bytes.length);
  return Buffer.concat([length, bytes]);
}

/** Reads RFC 4251 `string`s from a blob, bounded by its length; trailing bytes are an error. */
export class SshReader {
  private offset = 0;
  constructor(private readonly bytes: Buffer) {}

  string(): Buffer {
    if (this.offset + 4 > this.bytes.length) throw malformed('SSH blob truncated (length)');
    const length = this.bytes.readUInt32BE(this.offset);
    if (length > this.bytes.length - this.offset - 4) throw malformed('SSH blob truncated (string)');
    const value = this.bytes.subarray(this.offset + 4, this.offset + 4 + length);
    this.offset += 4 + length;
    return value;
  }

  uint32(): number {
    if (this.offset + 4 > this.bytes.length) throw malformed('SSH blob truncated (uint32)');
    const value = this.bytes.readUInt32BE(this.offset);
    this.offset += 4;
    return value;
  }

  uint64(): bigint {
    if (this.offset + 8 > this.bytes.length) throw malformed('SSH blob truncated (uint64)');
    const value = this.bytes.readBigUInt64BE(this.offset);
    this.offset += 8;
    return value;
  }

  /** Bytes consumed so far: the end of the signed part of a certificate, for instance. */
  get position(): number {
    return this.offset;
  }

  end(): void {
    if (this.offset !== this.bytes.length) throw malformed(`SSH blob has ${this.bytes.length - this.offset} trailing bytes`);
  }
}

/** The wire-format key blob of an Ed25519 or ECDSA P-256 public key. */
export function sshPublicKeyBlob(key: KeyObject): Buffer {
  if (key.asymmetricKeyType === 'ed25519') return Buffer.concat([sshString('ssh-ed25519'), sshString(ed25519PublicBytes(key))]);
  if (ecCurve(key) === 'P-256') {
    const { x, y } = ecPublicKeyXY(key);
    return Buffer.concat([sshString('ecdsa-sha2-nistp256'), sshString('nistp256'), sshString(Buffer.concat([Buffer.from([0x04]), x, y]))]);
  }
  throw malformed(`no OpenSSH form for ${key.asymmetricKeyType ?? 'this'} key (only ssh-ed25519 and ecdsa-sha2-nistp256)`);
}

/** Decodes a key blob; the type inside must be one we accept. */
export function parseSshPublicKeyBlob(blob: Buffer): { type: SshKeyType; key: KeyObject } {
  if (blob.length > MAX_BLOB_BYTES) throw malformed('SSH key blob too large');
  const r = new SshReader(blob);
  const type = r.string().toString('latin1');
  if (type === 'ssh-ed25519') {
    const raw = r.string();
    r.end();
    return { type, key: ed25519PublicKeyFromBytes(raw) };
  }
  if (type === 'ecdsa-sha2-nistp256') {
    const curve = r.string().toString('latin1');
    const q = r.string();
    r.end();
    if (curve !== 'nistp256') throw malformed('ecdsa-sha2-nistp256 key names another curve');
    // SEC 1 §2.3.3 uncompressed point: 0x04 ‖ x ‖ y
    if (q.length !== 65 || q[0] !== 0x04) throw malformed('ECDSA point is not an uncompressed P-256 point');
    return { type, key: ecPublicKeyFromXY('P-256', q.subarray(1, 33), q.subarray(33)) };
  }
  throw malformed(`unsupported SSH key type ${JSON.stringify(type.slice(0, 40))} (only ssh-ed25519 and ecdsa-sha2-nistp256)`);
}

/** Parses an OpenSSH public key line `type base64 [comment]`. */
export function parseSshPublicKey(line: string): SshPublicKey {
  if (line.length > MAX_LINE_CHARS) throw malformed('SSH public key line too long');
  // Trailing whitespace (a final newline from a file) is ignored; fields are separated by blanks.
  const m = /^([a-z0-9@.-]+)[ \t]+([A-Za-z0-9+/]+={0,2})(?:[ \t]+([^\r\n]*))?$/.exec(line.replace(/\s+$/, ''));
  if (m === null) throw malformed('not an OpenSSH public key line ("type base64 [comment]")');
  const [, lineType, base64, comment] = m as unknown as [string, string, string, string | undefined];
  const blob = Buffer.from(base64, 'base64');
  if (blob.toString('base64') !== base64) throw malformed('SSH public key base64 is not canonical');
  const { type, key } = parseSshPublicKeyBlob(blob);
  if (type !== lineType) throw malformed(`the line says ${lineType} but the key blob is ${type}`);
  return { type, key, blob, comment: comment === undefined || comment === '' ? undefined : comment };
}

/** The OpenSSH public key line of a key: `type base64` (and ` comment` when given). */
export function formatSshPublicKey(key: KeyObject, comment?: string): string {
  if (comment !== undefined && /[\r\n]/.test(comment)) throw new TypeError('an SSH key comment cannot contain line breaks');
  const blob = sshPublicKeyBlob(key);
  const type = parseSshPublicKeyBlob(blob).type;
  return comment === undefined || comment === '' ? `${type} ${blob.toString('base64')}` : `${type} ${blob.toString('base64')} ${comment}`;
}
