// Content-addressed files: `<root>/sha256/<hex>`. Uploads stream through SHA-256 into a
// temporary file in the same directory tree, are checked against the digest they were
// announced with, then renamed into place (atomic) and the directory fsynced — a reader
// sees a whole blob or none, and a blob's bytes always hash to its name. Memory use is
// bounded by the stream's buffers whatever the blob's size.
import { randomBytes } from 'node:crypto';
import { constants, createReadStream, type ReadStream } from 'node:fs';
import { open, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { formatDigest, type Digest } from '../../protocol/digest.js';
import { TrustlaunchError } from '../../protocol/errors.js';
import { contentPath, HashingLimiter, initContentDirectory } from '../../store/content-addressed.js';

export interface StoredBlob {
  readonly digest: Digest;
  readonly size: number;
}

export class BlobStore {
  readonly root: string;

  constructor(root: string) {
    this.root = root;
  }

  path(digest: Digest): string {
    return contentPath(this.root, digest);
  }

  /** Creates the directories and removes partial uploads a crash left behind. */
  async init(): Promise<void> {
    await initContentDirectory(this.root);
  }

  /** The blob's size, or undefined when it is not stored. */
  async size(digest: Digest): Promise<number | undefined> {
    try {
      const st = await stat(this.path(digest));
      return st.isFile() ? st.size : undefined;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  /**
   * Streams `source` into the store. With `expected`, the bytes must hash to it
   * (BLOB_DIGEST_MISMATCH otherwise, and nothing is kept).
   */
  async write(source: Readable, opts: { expected?: Digest; maxBytes: number }): Promise<StoredBlob> {
    const temp = join(this.root, 'tmp', `${randomBytes(12).toString('hex')}.part`);
    const limiter = new HashingLimiter(opts.maxBytes, `the blob exceeds ${opts.maxBytes} bytes`);
    let kept = false;
    // Opened before streaming, so the file exists when a failed upload removes it below (a
    // stream that opens it lazily could create it after that unlink: a stray .part). 'wx' is
    // O_CREAT|O_EXCL: the random name cannot be a file or link someone planted.
    const file = await open(temp, 'wx', 0o644);
    try {
      await pipeline(source, limiter, file.createWriteStream({ highWaterMark: 1 << 20 }));
      await this.#sync(temp, constants.O_RDONLY);
      const digest = formatDigest(limiter.hash.digest());
      if (opts.expected !== undefined && digest !== opts.expected) {
        throw new TrustlaunchError('BLOB_DIGEST_MISMATCH', `the uploaded bytes hash to ${digest}, not ${opts.expected}`, {
          detail: { expected: opts.expected, actual: digest },
        });
      }
      await rename(temp, this.path(digest));
      kept = true;
      await this.#sync(join(this.root, 'sha256'), constants.O_RDONLY | constants.O_DIRECTORY);
      return { digest, size: limiter.size };
    } finally {
      await file.close().catch(() => undefined);
      if (!kept) await unlink(temp).catch(() => undefined);
    }
  }

  /** A stream of the blob's bytes (NOT_FOUND when absent). */
  async read(digest: Digest): Promise<{ stream: ReadStream; size: number }> {
    const size = await this.size(digest);
    if (size === undefined) throw new TrustlaunchError('NOT_FOUND', `blob ${digest} is not stored`);
    return { stream: createReadStream(this.path(digest), { highWaterMark: 1 << 20 }), size };
  }

  async remove(digest: Digest): Promise<void> {
    await unlink(this.path(digest)).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw e;
    });
  }

  /** fsync of a file (its data) or a directory (a rename in it). */
  async #sync(path: string, flags: number): Promise<void> {
    const d = await open(path, flags);
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  }
}
