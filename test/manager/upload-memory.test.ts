// Image uploads stream: neither `trustlaunch image push` nor the manager holds an image
// in memory. Both run as their own processes; a 512 MiB image goes through, and each
// process's peak resident memory (VmHWM / maxRSS) stays within 96 MiB of what it used
// without an upload.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { initManager } from '../../src/manager/init.js';
import { sha256File } from '../../src/protocol/digest.js';
import { tempDir } from '../support/system.js';

const MiB = 1024 * 1024;
const IMAGE_BYTES = 512 * MiB;
const BOUND_KIB = 96 * 1024;
const ROOT = new URL('../../', import.meta.url).pathname;

function statusKiB(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m?.[1] !== undefined, `${field} of ${pid}`);
  return Number(m[1]);
}

/** Runs the CLI in its own process; resolves with its exit code, output and peak RSS. */
function cli(args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string; maxRssKiB: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test/manager/fixtures/cli-rss.ts'), ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      const rss = /maxRSS (\d+)/.exec(stderr)?.[1];
      resolve({ code, stdout, stderr, maxRssKiB: rss === undefined ? Number.NaN : Number(rss) });
    });
  });
}

describe('image upload memory', () => {
  let tmp: { path: string; dispose: () => void };
  let dir: string;
  let server: ChildProcess;

  before(async () => {
    tmp = tempDir('tl-upload-');
    dir = join(tmp.path, 'manager');
    await initManager({ dir, listenPort: 0 });
    server = spawn(process.execPath, [join(ROOT, 'bin/trustlaunch.js'), 'manager', 'serve', '--dir', dir, '--log-level', 'silent'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
    const deadline = Date.now() + 30_000;
    while (!existsSync(join(dir, 'endpoint'))) {
      assert.ok(Date.now() < deadline, 'the manager did not start');
      assert.equal(server.exitCode, null, 'the manager exited');
      await new Promise((r) => setTimeout(r, 50));
    }
  });
  after(async () => {
    if (server.exitCode === null) {
      const exited = new Promise((r) => server.once('exit', r));
      server.kill('SIGTERM');
      await exited;
    }
    tmp.dispose();
  });

  it('pushes a 512 MiB image with both sides’ peak memory within 96 MiB of their idle use', async () => {
    // Sparse in the middle, random at both ends: reading it costs disk, not the test's time.
    const file = join(tmp.path, 'big.img');
    const fh = await open(file, 'w');
    await fh.write(randomBytes(MiB), 0, MiB, 0);
    await fh.write(randomBytes(MiB), 0, MiB, IMAGE_BYTES - MiB);
    await fh.close();
    const { digest } = await sha256File(file);

    const pid = server.pid;
    assert.ok(pid !== undefined);
    const idle = await cli(['image', 'ls', '--dir', dir, '--json']);
    assert.equal(idle.code, 0, idle.stderr);
    const serverIdleKiB = statusKiB(pid, 'VmRSS');

    const push = await cli(['image', 'push', file, '--name', 'big', '--dir', dir, '--json']);
    assert.equal(push.code, 0, push.stderr);
    const out = JSON.parse(push.stdout) as { image: { digest: string; size: number }; uploaded: string[] };
    assert.equal(out.image.digest, digest);
    assert.equal(out.image.size, IMAGE_BYTES);
    assert.deepEqual(out.uploaded, [digest]);

    const serverPeakKiB = statusKiB(pid, 'VmHWM');
    assert.ok(serverPeakKiB < serverIdleKiB + BOUND_KIB, `manager peak ${serverPeakKiB} KiB vs idle ${serverIdleKiB} KiB`);
    assert.ok(push.maxRssKiB < idle.maxRssKiB + BOUND_KIB, `image push peak ${push.maxRssKiB} KiB vs image ls ${idle.maxRssKiB} KiB`);
    // The stored blob is the file, byte for byte (by digest).
    const stored = join(dir, 'images', 'sha256', digest.slice('sha256:'.length));
    assert.equal((await sha256File(stored)).digest, digest);
    // Pushing it again uploads nothing.
    const again = await cli(['image', 'push', file, '--name', 'big', '--dir', dir, '--json']);
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual((JSON.parse(again.stdout) as { uploaded: string[] }).uploaded, []);
    process.stdout.write(`# manager idle ${serverIdleKiB} KiB, peak ${serverPeakKiB} KiB; image ls ${idle.maxRssKiB} KiB, push ${push.maxRssKiB} KiB\n`);
  });
});
