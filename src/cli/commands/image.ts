// `trustlaunch image push | ls | rm`: content-addressed images on the manager. Uploads are
// streamed from disk (hashed first, then sent), never read whole into memory, and skipped
// for blobs the manager already holds. `image build-guest` builds the QEMU guest bundle
// (scripts/build-guest.sh, docs/guest-image.md) that `image push --bundle` uploads.
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import type { JsonClient } from '../../http/client.js';
import { canonicalize } from '../../protocol/canonical-json.js';
import { pathExists } from '../../fs/exists.js';
import { sha256File, type Digest } from '../../protocol/digest.js';
import { isTrustlaunchError, TrustlaunchError } from '../../protocol/errors.js';
import type { BundleManifest } from '../../manager/images/bundle.js';
import { buildGuest, readManifestFile } from '../../node/vm/qemu/guest-image.js';
import type { ImageView } from '../../manager/http/views.js';
import { withConnectionOptions, withManager, type ConnectionFlags } from '../context.js';
import { action, printResult, type OutputOptions } from '../output.js';
import { table } from './manager.js';

type Flags = ConnectionFlags & OutputOptions;

interface PushFlags extends Flags {
  name: string;
  kernel?: string;
  initrd?: string;
  cmdlineFile?: string;
  bundle?: string;
  replace?: boolean;
}

/** Uploads a file as a blob unless the manager has it; returns its digest. */
export async function pushBlob(client: JsonClient, path: string): Promise<{ digest: Digest; size: number; uploaded: boolean }> {
  const { digest, size } = await sha256File(path);
  try {
    await client.call('GET', `/v1/blobs/${digest}`);
    return { digest, size, uploaded: false };
  } catch (e) {
    if (!isTrustlaunchError(e, 'NOT_FOUND')) throw e;
  }
  const body = createReadStream(path, { highWaterMark: 1 << 20 });
  try {
    await client.call('PUT', `/v1/blobs/${digest}`, { raw: { body, contentType: 'application/octet-stream', length: size }, timeoutMs: 600_000 });
  } finally {
    body.destroy();
  }
  return { digest, size, uploaded: true };
}

/** The files of a bundle: from --kernel/--initrd/--cmdline-file, or DIR/{vmlinuz,initrd.img,cmdline} (checked against DIR/manifest.json). */
async function bundleFiles(opts: PushFlags): Promise<{ files: { kernel: string; initrd?: string; cmdline?: string }; expected?: BundleManifest }> {
  if (opts.bundle !== undefined) {
    const dir = opts.bundle;
    const present = async (name: string): Promise<string | undefined> => (await pathExists(join(dir, name))) ? join(dir, name) : undefined;
    const [initrd, cmdline] = [await present('initrd.img'), await present('cmdline')];
    const files = { kernel: join(dir, 'vmlinuz'), ...(initrd === undefined ? {} : { initrd }), ...(cmdline === undefined ? {} : { cmdline }) };
    let expected: BundleManifest | undefined;
    try {
      expected = readManifestFile(join(dir, 'manifest.json')).manifest;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    return expected === undefined ? { files } : { files, expected };
  }
  if (opts.kernel === undefined) throw new TrustlaunchError('MALFORMED_REQUEST', 'a bundle needs --kernel (or --bundle DIR)');
  return {
    files: {
      kernel: opts.kernel,
      ...(opts.initrd === undefined ? {} : { initrd: opts.initrd }),
      ...(opts.cmdlineFile === undefined ? {} : { cmdline: opts.cmdlineFile }),
    },
  };
}

async function push(file: string | undefined, opts: PushFlags): Promise<{ image: ImageView; uploaded: string[] }> {
  const isBundle = opts.bundle !== undefined || opts.kernel !== undefined || opts.initrd !== undefined || opts.cmdlineFile !== undefined;
  if (isBundle === (file !== undefined)) {
    throw new TrustlaunchError('MALFORMED_REQUEST', 'give either FILE (a raw image) or --kernel/--initrd/--cmdline-file or --bundle DIR (a QEMU bundle)');
  }
  return withManager(opts, async (client) => {
    const uploaded: string[] = [];
    const send = async (path: string): Promise<Digest> => {
      if (!(await stat(path)).isFile()) throw new TrustlaunchError('MALFORMED_REQUEST', `${path} is not a regular file`);
      const blob = await pushBlob(client, path);
      if (blob.uploaded) uploaded.push(blob.digest);
      return blob.digest;
    };
    let body: Record<string, unknown>;
    if (file !== undefined) {
      body = { name: opts.name, raw: await send(file) };
    } else {
      const { files, expected } = await bundleFiles(opts);
      const manifest: BundleManifest = {
        kernel: await send(files.kernel),
        ...(files.initrd === undefined ? {} : { initrd: await send(files.initrd) }),
        ...(files.cmdline === undefined ? {} : { cmdline: await send(files.cmdline) }),
      };
      if (expected !== undefined && canonicalize(expected) !== canonicalize(manifest)) {
        throw new TrustlaunchError('BLOB_DIGEST_MISMATCH', `the bundle's files do not match its manifest.json`, { detail: { expected, actual: manifest } });
      }
      body = { name: opts.name, bundle: manifest };
    }
    if (opts.replace === true) body['replace'] = true;
    const image = await client.call<ImageView>('POST', '/v1/images', { body });
    return { image, uploaded };
  });
}

export function registerImageCommands(program: Command): void {
  const image = program.command('image').description('VM images on the manager, content-addressed by SHA-256');

  withConnectionOptions(
    image
      .command('push')
      .description('upload an image (streamed) and name it: a raw FILE, or a QEMU bundle')
      .argument('[file]', 'a raw image (e.g. a process-VM guest program)'),
  )
    .requiredOption('--name <name>', 'the image name (a-z, 0-9, . _ -)')
    .option('--kernel <file>', 'bundle: the kernel image')
    .option('--initrd <file>', 'bundle: the initramfs')
    .option('--cmdline-file <file>', 'bundle: the kernel command line (exact bytes, no trailing newline)')
    .option('--bundle <dir>', 'bundle: a directory with vmlinuz, initrd.img, cmdline (and manifest.json, checked)')
    .option('--replace', 'point an existing name at this content')
    .option('--json', 'print JSON')
    .action(
      action(async (file: string | undefined, opts: PushFlags) => {
        const out = await push(file, opts);
        printResult(opts, out, () => [
          `image ${out.image.name} → ${out.image.digest} (${out.image.kind}, ${out.image.size} bytes; ${out.uploaded.length} blob(s) uploaded)`,
        ]);
      }),
    );

  image
    .command('build-guest')
    .description('build the QEMU guest (Debian cloud kernel, initramfs with OpenSSH) from Debian packages: vmlinuz, initrd.img, cmdline, manifest.json')
    .option('--out <dir>', 'where to put it (default guest/build/qemu in the checkout)')
    .option('--force', 'rebuild even when it is up to date')
    .option('--json', 'print JSON')
    .action(
      action(async (opts: { out?: string; force?: boolean } & OutputOptions) => {
        const quiet = opts.json === true;
        const g = await buildGuest({ ...(opts.out === undefined ? {} : { out: opts.out }), ...(opts.force === true ? { force: true } : {}), progress: (line) => quiet || process.stderr.write(`${line}\n`) });
        printResult(opts, { dir: g.dir, digest: g.digest, manifest: g.manifest, cmdline: g.cmdline }, () => [
          `guest in ${g.dir} (image digest ${g.digest})`,
          `  kernel   ${g.manifest.kernel}`,
          `  initrd   ${g.manifest.initrd}`,
          `  cmdline  ${g.manifest.cmdline}  (${JSON.stringify(g.cmdline)})`,
          `push it:   trustlaunch image push --bundle ${g.dir} --name NAME`,
          `allow it:  trustlaunch ca allowlist add --manifest ${g.dir}/manifest.json --name NAME`,
        ]);
      }),
    );

  withConnectionOptions(image.command('ls').description('list images'))
    .option('--json', 'print JSON')
    .action(
      action(async (opts: Flags) => {
        const out = await withManager(opts, (c) => c.call<{ images: ImageView[] }>('GET', '/v1/images'));
        printResult(opts, out, () => table(['NAME', 'KIND', 'SIZE', 'DIGEST'], out.images.map((i) => [i.name, i.kind, String(i.size), i.digest])));
      }),
    );

  withConnectionOptions(image.command('rm').description('remove an image name (its blobs go when no image uses them)').argument('<name>'))
    .option('--json', 'print JSON')
    .action(
      action(async (name: string, opts: Flags) => {
        await withManager(opts, (c) => c.call('DELETE', `/v1/images/${encodeURIComponent(name)}`));
        printResult(opts, { removed: name }, () => `image ${name} removed`);
      }),
    );
}
