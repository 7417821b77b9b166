// The character-device transport (/dev/tpmrm0 in production) against a real TPM behind a
// character device. No kernel TPM exists here, so the device is a pseudo-terminal in raw
// mode: `script` (util-linux) allocates it, `stty raw -echo` makes it byte-transparent, and
// its other end is relayed to swtpm in chardev mode (the mode swtpm uses behind /dev/vtpm*).
// The transport opens the pty path with open(2), writes commands and reads responses as it
// would with /dev/tpmrm0.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isTrustlaunchError } from '../../../src/protocol/errors.js';
import { TPM_ALG } from '../../../src/tpm/constants.js';
import { TpmClient } from '../../../src/tpm/client/client.js';
import { getRandom } from '../../../src/tpm/client/commands/capability.js';
import { readPublic } from '../../../src/tpm/client/commands/objects.js';
import { pcrExtend, pcrReadSha256 } from '../../../src/tpm/client/commands/pcr.js';
import { startup } from '../../../src/tpm/client/commands/startup.js';
import { DeviceTransport } from '../../../src/tpm/client/device-transport.js';
import { isTpmResponseError } from '../../../src/tpm/client/errors.js';
import { RC } from '../../../src/tpm/client/response-code.js';
import { requireCommand } from '../../support/system.js';

interface PtyTpm {
  readonly path: string;
  readonly swtpm: ChildProcess;
  dispose(): void;
}

async function ptyTpm(stateDir: string): Promise<PtyTpm> {
  for (const c of ['script', 'stty', 'swtpm']) requireCommand(c);
  const script = spawn('script', ['-q', '-e', '-c', 'stty raw -echo && echo ready && exec sleep 600', '/dev/null'], { stdio: ['pipe', 'pipe', 'ignore'] });
  await new Promise<void>((resolve, reject) => {
    script.stdout.once('data', () => resolve());
    script.once('exit', () => reject(new Error('script exited before the pty was ready')));
  });
  const child = readFileSync(`/proc/${script.pid}/task/${script.pid}/children`, 'utf8').trim().split(/\s+/)[0];
  const path = readlinkSync(`/proc/${child}/fd/0`);
  assert.match(path, /^\/dev\/pts\/\d+$/);
  const swtpm = spawn('swtpm', ['chardev', '--tpm2', '--fd', '3', '--tpmstate', `dir=${stateDir}`, '--flags', 'not-need-init'], { stdio: ['ignore', 'ignore', 'ignore', 'pipe'] });
  const channel = swtpm.stdio[3] as Socket;
  script.stdout.on('data', (d: Buffer) => channel.write(d));
  channel.on('data', (d: Buffer) => script.stdin.write(d));
  channel.on('error', () => undefined);
  script.stdin.on('error', () => undefined);
  return {
    path,
    swtpm,
    dispose: () => {
      swtpm.kill('SIGKILL');
      script.kill('SIGKILL');
    },
  };
}

void describe('character-device transport (a raw pty in front of swtpm chardev)', () => {
  let dir: string;
  let dev: PtyTpm;
  let tpm: TpmClient;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tl-chardev-'));
    dev = await ptyTpm(dir);
    tpm = new TpmClient(new DeviceTransport(dev.path), { timeoutMs: 5000 });
    await startup(tpm);
  });
  after(async () => {
    await tpm.close();
    dev.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  void it('carries commands and responses, errors included', async () => {
    assert.equal((await getRandom(tpm, 48)).length, 48);
    await pcrExtend(tpm, 16, [{ hashAlg: TPM_ALG.SHA256, digest: Buffer.alloc(32, 1) }]);
    const values = await pcrReadSha256(tpm, Array.from({ length: 24 }, (_, i) => i));
    assert.equal(values.size, 24);
    assert.notDeepEqual(values.get(16), Buffer.alloc(32));
    await assert.rejects(readPublic(tpm, 0x81000fff), (e: unknown) => isTpmResponseError(e, RC.HANDLE));
  });

  void it('queues concurrent callers: one command on the device at a time', async () => {
    const sizes = Array.from({ length: 20 }, (_, i) => i + 1);
    const answers = await Promise.all(sizes.map((n) => getRandom(tpm, n)));
    assert.deepEqual(
      answers.map((a) => a.length),
      sizes,
    );
  });

  void it('a TPM that stops answering gives TPM_TIMEOUT, a missing device TPM_TRANSPORT_ERROR', async () => {
    const slow = new TpmClient(new DeviceTransport(dev.path), { timeoutMs: 200 });
    dev.swtpm.kill('SIGSTOP');
    try {
      const t0 = performance.now();
      await assert.rejects(getRandom(slow, 8), (e: unknown) => isTrustlaunchError(e, 'TPM_TIMEOUT'));
      assert.ok(performance.now() - t0 < 2000);
    } finally {
      dev.swtpm.kill('SIGCONT');
    }
    // The late answer lands on the retired handle's side of the pty; drain it before going on.
    await new Promise((r) => setTimeout(r, 100));
    await slow.close();
    const missing = new TpmClient(new DeviceTransport(join(dir, 'no-such-tpm')), { timeoutMs: 1000 });
    await assert.rejects(getRandom(missing, 8), (e: unknown) => isTrustlaunchError(e, 'TPM_TRANSPORT_ERROR'));
    await missing.close();
  });
});
