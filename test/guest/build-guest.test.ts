// scripts/build-guest.sh: the manifest describes the outputs exactly, the initramfs holds
// what docs/guest-image.md says (and never a host key), a second build gives the same
// digests, an up-to-date guest is left alone, a damaged one is rebuilt, and a missing
// piece fails loudly.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { sha256Digest } from '../../src/protocol/digest.js';
import { ensureGuestImage, type GuestImage } from '../support/qemu.js';
import { requireCommand, tempDir } from '../support/system.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const SCRIPT = join(REPO, 'scripts', 'build-guest.sh');
const EPOCH = 946684800; // the fixed mtime of every initramfs entry
const CACHE = process.env['TRUSTLAUNCH_GUEST_CACHE'] ?? join(REPO, 'guest', 'build', 'cache');

interface CpioEntry { name: string; mode: number; uid: number; gid: number; mtime: number; data: Buffer }

/** Reads a cpio "newc" archive (magic 070701): 13 hex fields, name, data, 4-byte alignment. */
function readNewc(archive: Buffer): CpioEntry[] {
  const entries: CpioEntry[] = [];
  let off = 0;
  for (;;) {
    assert.equal(archive.toString('latin1', off, off + 6), '070701', `newc magic at ${off}`);
    const field = (i: number): number => parseInt(archive.toString('latin1', off + 6 + i * 8, off + 14 + i * 8), 16);
    const [mode, uid, gid, mtime, size, nameSize] = [field(1), field(2), field(3), field(5), field(6), field(11)];
    const name = archive.toString('utf8', off + 110, off + 110 + nameSize - 1);
    const dataStart = (off + 110 + nameSize + 3) & ~3;
    if (name === 'TRAILER!!!') return entries;
    entries.push({ name, mode, uid, gid, mtime, data: archive.subarray(dataStart, dataStart + size) });
    off = (dataStart + size + 3) & ~3;
  }
}

const isFile = (e: CpioEntry): boolean => (e.mode & 0o170000) === 0o100000;
const isLink = (e: CpioEntry): boolean => (e.mode & 0o170000) === 0o120000;

let image: GuestImage;
let out: { path: string; dispose: () => void };

before(() => {
  requireCommand('lz4');
  image = ensureGuestImage();
  out = tempDir('tl-build-guest-');
});
after(() => out.dispose());

void describe('scripts/build-guest.sh', () => {
  void it('writes a manifest of sha256 digests of vmlinuz, initrd.img and the exact command line', () => {
    assert.deepEqual(image.manifest, {
      kernel: sha256Digest(readFileSync(image.kernel)),
      initrd: sha256Digest(readFileSync(image.initrd)),
      cmdline: sha256Digest(Buffer.from(image.cmdline, 'utf8')),
    });
    assert.doesNotMatch(image.cmdline, /\n/, 'cmdline has no trailing newline: the file bytes are the digested bytes');
    assert.match(image.cmdline, /(^| )console=ttyS0( |$)/);
    assert.match(image.cmdline, /(^| )panic=-1( |$)/);
    // The manifest is canonical JSON (RFC 8785 key order) on one line.
    assert.equal(readFileSync(join(image.dir, 'manifest.json'), 'utf8'), `${JSON.stringify({ cmdline: image.manifest.cmdline, initrd: image.manifest.initrd, kernel: image.manifest.kernel })}\n`);
  });

  void it('ships Debian\'s cloud kernel verbatim and an initramfs with busybox, sshd, ssh-keygen, the modules in order, and no host key', () => {
    const stamp = readFileSync(join(image.dir, 'stamp'), 'utf8');
    const [, pkg, version] = /^kernel (linux-image-\S+-cloud-amd64) (\S+)$/m.exec(stamp) ?? [];
    assert.ok(pkg !== undefined && version !== undefined, 'the stamp records the kernel package');
    const deb = readdirSync(CACHE).find((f) => f === `${pkg}_${version.replace(/:/g, '%3a')}_amd64.deb`);
    assert.ok(deb !== undefined, 'the kernel package is cached');
    const fromDeb = execFileSync('sh', ['-c', `dpkg-deb --fsys-tarfile "$1" | tar -xO ./boot/vmlinuz-${pkg.slice('linux-image-'.length)}`, 'sh', join(CACHE, deb)], { maxBuffer: 64 << 20 });
    assert.equal(sha256Digest(fromDeb), image.manifest.kernel);

    const cpio = execFileSync('lz4', ['-dc', image.initrd], { maxBuffer: 256 << 20 });
    const entries = readNewc(cpio);
    const byName = new Map(entries.map((e) => [e.name, e]));
    assert.deepEqual(entries.map((e) => e.name), [...entries.map((e) => e.name)].sort((a, b) => (Buffer.compare(Buffer.from(a), Buffer.from(b)))), 'entries are sorted');
    for (const e of entries) {
      assert.equal(e.mtime, EPOCH, `${e.name} has the fixed mtime`);
      assert.deepEqual([e.uid, e.gid], [0, 0], `${e.name} belongs to root`);
      assert.doesNotMatch(e.name, /ssh_host_/, 'no host key in the image');
    }
    for (const f of ['init', 'bin/busybox', 'usr/sbin/sshd', 'usr/bin/ssh-keygen', 'lib64/ld-linux-x86-64.so.2', 'lib/x86_64-linux-gnu/libc.so.6', 'usr/lib/trustlaunch/channel.sh', 'usr/lib/trustlaunch/json-line.awk', 'etc/passwd']) {
      const e = byName.get(f);
      assert.ok(e !== undefined && isFile(e), `${f} is a regular file`);
    }
    assert.equal((byName.get('init')?.mode ?? 0) & 0o111, 0o111, '/init is executable');
    const sh = byName.get('bin/sh');
    assert.ok(sh !== undefined && isLink(sh) && sh.data.toString() === '/bin/busybox', 'applets link to /bin/busybox');
    assert.match(byName.get('etc/passwd')?.data.toString() ?? '', /^sshd:[^:]*:\d+:\d+:/m, 'the sshd privilege separation user exists');
    for (const d of ['run/sshd', 'var/empty', 'root/.ssh']) assert.ok(byName.has(d), `${d} exists`);
    const root = byName.get('root/.ssh');
    assert.equal((root?.mode ?? 0) & 0o777, 0o700);

    const modules = (byName.get('etc/trustlaunch/modules')?.data.toString() ?? '').trim().split('\n').map((m) => m.replace(/^\/lib\/modules\/[^/]+\/kernel\//, ''));
    const at = (m: string): number => modules.findIndex((p) => p.endsWith(`/${m}.ko`));
    for (const m of ['virtio_ring', 'virtio', 'virtio_pci_modern_dev', 'virtio_pci', 'failover', 'net_failover', 'virtio_net', 'virtio_console', 'virtio-rng']) {
      assert.ok(at(m) >= 0, `${m} is loaded`);
    }
    assert.ok(at('virtio_ring') < at('virtio') && at('virtio') < at('virtio_pci') && at('virtio_pci_modern_dev') < at('virtio_pci'));
    assert.ok(at('failover') < at('net_failover') && at('net_failover') < at('virtio_net') && at('virtio') < at('virtio_console'));
    for (const line of (byName.get('etc/trustlaunch/modules')?.data.toString() ?? '').trim().split('\n')) {
      assert.ok(byName.has(line.slice(1)), `${line} is in the image`);
    }
  });

  void it('builds reproducibly, leaves an up-to-date guest alone and rebuilds a damaged one', () => {
    const first = run(['--out', out.path, '--force']);
    assert.equal(first.status, 0, first.stderr);
    const rebuilt = JSON.parse(readFileSync(join(out.path, 'manifest.json'), 'utf8')) as unknown;
    assert.deepEqual(rebuilt, image.manifest, 'a second build gives the same digests');

    const mtimes = ['vmlinuz', 'initrd.img', 'cmdline', 'manifest.json'].map((f) => statSync(join(out.path, f)).mtimeMs);
    const again = run(['--out', out.path]);
    assert.equal(again.status, 0, again.stderr);
    assert.match(again.stderr, /up to date/);
    assert.deepEqual(['vmlinuz', 'initrd.img', 'cmdline', 'manifest.json'].map((f) => statSync(join(out.path, f)).mtimeMs), mtimes, 'nothing was rewritten');

    writeFileSync(join(out.path, 'initrd.img'), 'damaged');
    const repaired = run(['--out', out.path]);
    assert.equal(repaired.status, 0, repaired.stderr);
    assert.doesNotMatch(repaired.stderr, /up to date/);
    assert.equal(sha256Digest(readFileSync(join(out.path, 'initrd.img'))), image.manifest.initrd);
  });

  void it('fails loudly on a missing piece or a bad argument', () => {
    const missing = run(['--out', join(out.path, 'missing')], { TRUSTLAUNCH_GUEST_KERNEL: 'linux-image-0.0.0-0-cloud-amd64' });
    assert.notEqual(missing.status, 0);
    assert.match(missing.stderr, /build-guest: ERROR: .*linux-image-0\.0\.0-0-cloud-amd64/);
    const badArg = run(['--bogus']);
    assert.equal(badArg.status, 2);
    assert.match(badArg.stderr, /unknown argument: --bogus/);
    const badCompression = run(['--out', join(out.path, 'bad'), '--force'], { TRUSTLAUNCH_GUEST_COMPRESSION: 'zip' });
    assert.notEqual(badCompression.status, 0);
    assert.match(badCompression.stderr, /build-guest: ERROR: .*compression/);
  });
});

function run(args: string[], env: Record<string, string> = {}): { status: number | null; stderr: string } {
  const r = spawnSync('bash', [SCRIPT, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 15 * 60_000 });
  return { status: r.status, stderr: r.stderr };
}
