import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { TrustlaunchError } from './errors.js';

/** A SHA-256 digest in its one textual form: `sha256:` and 64 lowercase hex digits. */
export type Digest = `sha256:${string}`;

const DIGEST = /^sha256:[0-9a-f]{64}$/;

export function isDigest(text: unknown): text is Digest {
  return typeof text === 'string' && DIGEST.test(text);
}

export function parseDigest(text: string): Digest {
  if (!isDigest(text)) {
    throw new TrustlaunchError('MALFORMED_DIGEST', `not a digest (want sha256:<64 lowercase hex>): ${JSON.stringify(text.slice(0, 80))}`);
  }
  return text;
}

export function formatDigest(raw: Uint8Array): Digest {
  if (raw.length !== 32) throw new TypeError(`a SHA-256 digest has 32 bytes, got ${raw.length}`);
  return `sha256:${Buffer.from(raw).toString('hex')}`;
}

/** The 32 raw bytes of a digest. */
export function digestBytes(digest: Digest): Buffer {
  return Buffer.from(parseDigest(digest).slice(7), 'hex');
}

export function sha256(data: Uint8Array | string): Buffer {
  return createHash('sha256').update(data).digest();
}

export function sha256Digest(data: Uint8Array | string): Digest {
  return formatDigest(sha256(data));
}

/** SHA-256 of a stream in constant memory; also counts the bytes. */
export async function sha256Stream(stream: Readable): Promise<{ digest: Digest; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of stream) {
    const buf = chunk as Buffer;
    size += buf.length;
    hash.update(buf);
  }
  return { digest: formatDigest(hash.digest()), size };
}

/** SHA-256 of a file in constant memory (streamed in 1 MiB reads). */
export function sha256File(path: string): Promise<{ digest: Digest; size: number }> {
  return sha256Stream(createReadStream(path, { highWaterMark: 1 << 20 }));
}
