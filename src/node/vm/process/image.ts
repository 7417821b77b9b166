// Process-VM images (docs/process-vms.md): an image IS the bytes of one ESM program that
// `node --input-type=module -` runs; its SHA-256 is the kernel digest the CA allowlists.
// The default image ships as guest/process/guest.mjs. Padded variants (the benchmark's
// 16 MiB image) append one block comment, so they behave exactly like the default image
// but measure differently.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const RELATIVE = join('guest', 'process', 'guest.mjs');

/** The path of the shipped default guest (found upwards from this module: works from src/ and dist/). */
export function defaultGuestImagePath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    const candidate = join(dir, RELATIVE);
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new Error(`${RELATIVE} not found above ${fileURLToPath(import.meta.url)}`);
}

/** The default guest image's bytes. */
export function defaultGuestImage(): Buffer {
  return readFileSync(defaultGuestImagePath());
}

const OPEN = Buffer.from('\n/*');
const CLOSE = Buffer.from('*/\n');
const LINE = 'trustlaunch process-guest padding; never executed.\n';

/**
 * `image` followed by one block comment so that the result has exactly `totalBytes` bytes.
 * `label` (one line, no `*` or `/`) goes into the comment, so two labels give two digests.
 */
export function padGuestImage(image: Uint8Array, totalBytes: number, label = ''): Buffer {
  if (!/^[^\r\n*/]{0,200}$/.test(label)) throw new TypeError('label is one line of at most 200 characters without * or /');
  const head = Buffer.from(label === '' ? '' : ` ${label}\n`);
  const fixed = image.length + OPEN.length + head.length + CLOSE.length;
  if (!Number.isSafeInteger(totalBytes) || totalBytes < fixed) throw new RangeError(`a padded image needs at least ${fixed} bytes`);
  const out = Buffer.alloc(totalBytes);
  out.set(image, 0);
  let at = image.length;
  at += OPEN.copy(out, at);
  at += head.copy(out, at);
  const fillEnd = totalBytes - CLOSE.length;
  const line = Buffer.from(LINE);
  while (at < fillEnd) at += line.copy(out, at, 0, Math.min(line.length, fillEnd - at));
  CLOSE.copy(out, fillEnd);
  return out;
}
