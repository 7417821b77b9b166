// Content-addressed files on disk, laid out the same wherever they are kept (the manager's
// blob store, dom0's image store): `<root>/sha256/<hex>` holds bytes that hash to their
// name, and uploads stream into `<root>/tmp/<random>.part` before being renamed into place.
import { createHash } from 'node:crypto';
import { mkdir, readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { parseDigest, type Digest } from '../protocol/digest.js';
import { TrustlaunchError } from '../protocol/errors.js';

/** Where the file of `digest` lives under `root` (the digest is checked first). */
export function contentPath(root: string, digest: Digest): string {
  return join(root, 'sha256', parseDigest(digest).slice('sha256:'.length));
}

/** Creates `root/sha256` and `root/tmp` (mode 0700) and removes partial uploads a crash left behind. */
export async function initContentDirectory(root: string): Promise<void> {
  await mkdir(join(root, 'sha256'), { recursive: true, mode: 0o700 });
  await mkdir(join(root, 'tmp'), { recursive: true, mode: 0o700 });
  for (const name of await readdir(join(root, 'tmp'))) {
    if (name.endsWith('.part')) await unlink(join(root, 'tmp', name)).catch(() => undefined);
  }
}

/**
 * Hashes (SHA-256) and counts what passes through; fails with BODY_TOO_LARGE and
 * `tooLargeMessage` once more than `maxBytes` have come, before passing them on.
 */
export class HashingLimiter extends Transform {
  readonly hash = createHash('sha256');
  size = 0;

  constructor(
    private readonly maxBytes: number,
    private readonly tooLargeMessage: string,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.size += chunk.length;
    if (this.size > this.maxBytes) {
      callback(new TrustlaunchError('BODY_TOO_LARGE', this.tooLargeMessage));
      return;
    }
    this.hash.update(chunk);
    callback(null, chunk);
  }
}
