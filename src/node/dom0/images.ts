// dom0's image store: VM images the manager uploads, content-addressed on the node's disk
// (`images/sha256/<hex>`). An upload streams through SHA-256 into a temporary file, is
// bounded in size, checked against the digest it was announced with, and renamed into
// place; memory use does not grow with the image. dom0 is untrusted: the hypervisor
// hashes whatever dom0 hands it, so this check only saves a bad launch, it protects nothing.
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { formatDigest, parseDigest, sha256Digest, type Digest } from '../../protocol/digest.js';
import { TrustlaunchError } from '../../protocol/errors.js';
import { contentPath, HashingLimiter, initContentDirectory } from '../../store/content-addressed.js';

export class ImageStore {
  readonly root: string;
  readonly maxBytes: number;

  constructor(root: string, maxBytes: number) {
    this.root = root;
    this.maxBytes = maxBytes;
  }

  async init(): Promise<void> {
    await initContentDirectory(this.root);
  }

  path(digest: Digest): string {
    return contentPath(this.root, digest);
  }

  async size(digest: Digest): Promise<number | undefined> {
    try {
      return (await stat(this.path(digest))).size;
    } catch {
      return undefined;
    }
  }

  /** Streams `body` to disk; BLOB_DIGEST_MISMATCH when it does not hash to `digest`. Returns whether it was new. */
  async put(digest: Digest, body: Readable): Promise<{ digest: Digest; size: number; created: boolean }> {
    parseDigest(digest);
    const temp = join(this.root, 'tmp', `${randomBytes(8).toString('hex')}.part`);
    const file = await open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    const limiter = new HashingLimiter(this.maxBytes, `an image has at most ${this.maxBytes} bytes`);
    try {
      await pipeline(body, limiter, file.createWriteStream());
      const actual = formatDigest(limiter.hash.digest());
      if (actual !== digest) throw new TrustlaunchError('BLOB_DIGEST_MISMATCH', `the uploaded bytes hash to ${actual}, not ${digest}`);
      const created = (await this.size(digest)) === undefined;
      await rename(temp, this.path(digest));
      return { digest, size: limiter.size, created };
    } catch (e) {
      await unlink(temp).catch(() => undefined);
      throw e;
    } finally {
      await file.close().catch(() => undefined);
    }
  }

  /** Stores small inline bytes (POST /v1/vms with the image in the body). */
  async putBytes(bytes: Uint8Array): Promise<Digest> {
    if (bytes.length > this.maxBytes) throw new TrustlaunchError('BODY_TOO_LARGE', `an image has at most ${this.maxBytes} bytes`);
    const digest = sha256Digest(bytes);
    if ((await this.size(digest)) !== undefined) return digest;
    await this.put(digest, Readable.from([Buffer.from(bytes)]));
    return digest;
  }

  /**
   * The image's bytes in an ArrayBuffer of their own, to hand over to the hypervisor by
   * transfer (no copy; the buffer is detached from dom0). NOT_FOUND for unknown digests.
   */
  async read(digest: Digest): Promise<ArrayBuffer> {
    let bytes: Buffer;
    try {
      bytes = await readFile(this.path(digest));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new TrustlaunchError('NOT_FOUND', `the node has no image ${digest} (PUT /v1/images/${digest} first)`);
      throw e;
    }
    if (bytes.length > this.maxBytes) throw new TrustlaunchError('BODY_TOO_LARGE', `an image has at most ${this.maxBytes} bytes`);
    return ownBuffer(bytes);
  }
}

/** The bytes in an ArrayBuffer nobody else shares (a pooled Buffer is copied out). */
export function ownBuffer(bytes: Buffer): ArrayBuffer {
  if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer) return bytes.buffer;
  const copy = new ArrayBuffer(bytes.length);
  new Uint8Array(copy).set(bytes);
  return copy;
}
