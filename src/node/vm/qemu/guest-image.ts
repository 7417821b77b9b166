// The project's QEMU guest (docs/guest-image.md): built by scripts/build-guest.sh from
// Debian packages into a directory holding `vmlinuz`, `initrd.img`, `cmdline` and
// `manifest.json` — exactly what `trustlaunch image push --bundle DIR` uploads and
// `trustlaunch ca allowlist add --manifest DIR/manifest.json` pins.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TrustlaunchError } from '../../../protocol/errors.js';
import { sha256Digest, type Digest } from '../../../protocol/digest.js';
import { parseManifest, type BundleManifest } from '../../../manager/images/bundle.js';

const SCRIPT = join('scripts', 'build-guest.sh');

/** The checkout's root (found upwards from this module: works from src/ and dist/). */
function repositoryRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    if (existsSync(join(dir, SCRIPT))) return dir;
    dir = dirname(dir);
  }
  throw new TrustlaunchError('UNAVAILABLE', `${SCRIPT} not found above ${fileURLToPath(import.meta.url)}: building the guest needs a trustlaunch checkout`);
}

/** Where scripts/build-guest.sh puts the guest unless told otherwise. */
export function defaultGuestDir(): string {
  return join(repositoryRoot(), 'guest', 'build', 'qemu');
}

export interface GuestBundle {
  readonly dir: string;
  readonly kernelPath: string;
  readonly initrdPath: string;
  readonly cmdlinePath: string;
  /** The kernel command line, exactly (its SHA-256 is `manifest.cmdline`). */
  readonly cmdline: string;
  readonly manifest: { readonly kernel: Digest; readonly initrd: Digest; readonly cmdline: Digest };
  /** The manifest's digest: the image digest a manager gives this bundle. */
  readonly digest: Digest;
}

/**
 * A manifest.json file: the canonical manifest, as a text file may end (one trailing
 * newline, which scripts/build-guest.sh writes, is not part of it). MALFORMED_REQUEST
 * unless the rest is exactly the canonical encoding.
 */
export function readManifestFile(path: string): { manifest: BundleManifest; bytes: Buffer } {
  const raw = readFileSync(path);
  const bytes = raw.length > 0 && raw[raw.length - 1] === 0x0a ? raw.subarray(0, raw.length - 1) : raw;
  return { manifest: parseManifest(bytes), bytes };
}

/** Reads a built guest; MALFORMED_REQUEST unless its manifest names all three parts. */
export function readGuestBundle(dir: string = defaultGuestDir()): GuestBundle {
  const { manifest: m, bytes: manifestBytes } = readManifestFile(join(dir, 'manifest.json'));
  if (m.initrd === undefined || m.cmdline === undefined) throw new TrustlaunchError('MALFORMED_REQUEST', `${dir}/manifest.json does not name an initrd and a cmdline`);
  return {
    dir,
    kernelPath: join(dir, 'vmlinuz'),
    initrdPath: join(dir, 'initrd.img'),
    cmdlinePath: join(dir, 'cmdline'),
    cmdline: readFileSync(join(dir, 'cmdline'), 'utf8'),
    manifest: { kernel: m.kernel, initrd: m.initrd, cmdline: m.cmdline },
    digest: sha256Digest(manifestBytes),
  };
}

/**
 * Runs scripts/build-guest.sh (a quick no-op when the guest is up to date; the first build
 * downloads the kernel package). `progress` gets the script's lines. UNAVAILABLE when it fails.
 */
export async function buildGuest(o: { out?: string; force?: boolean; progress?: (line: string) => void } = {}): Promise<GuestBundle> {
  const root = repositoryRoot();
  const args = [join(root, SCRIPT), ...(o.out === undefined ? [] : ['--out', o.out]), ...(o.force === true ? ['--force'] : [])];
  const child = spawn('bash', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let tail = '';
  const onData = (d: Buffer): void => {
    const text = d.toString('utf8');
    tail = (tail + text).slice(-4096);
    for (const line of text.split('\n')) if (line.trim() !== '') o.progress?.(line);
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const status = await new Promise<number | null>((resolve) => {
    child.once('error', () => resolve(null));
    child.once('exit', (code) => resolve(code));
  });
  if (status !== 0) throw new TrustlaunchError('UNAVAILABLE', `scripts/build-guest.sh failed (status ${String(status)}):\n${tail.trim()}`);
  return readGuestBundle(o.out ?? defaultGuestDir());
}
