// swtpm process management and its control channel: TCP ports without collisions and
// where tpm2-tools looks for them, unix sockets, orderly stop with state saved, no process
// left behind even when the parent dies abruptly, locality and power cycling through the
// control channel.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isTrustlaunchError } from '../../../src/protocol/errors.js';
import { TPM_ALG } from '../../../src/tpm/constants.js';
import { TpmClient } from '../../../src/tpm/client/client.js';
import { getRandom } from '../../../src/tpm/client/commands/capability.js';
import { pcrExtend, pcrReadSha256 } from '../../../src/tpm/client/commands/pcr.js';
import { startup } from '../../../src/tpm/client/commands/startup.js';
import { isTpmResponseError } from '../../../src/tpm/client/errors.js';
import { RC } from '../../../src/tpm/client/response-code.js';
import { SocketTransport } from '../../../src/tpm/client/socket-transport.js';
import { PTM_CAP } from '../../../src/tpm/swtpm/control-channel.js';
import { SwtpmProcess } from '../../../src/tpm/swtpm/process.js';
import { tpm2ok } from '../../support/tpm2-tools.js';
import { assertProcessGone, requireSwtpmTools } from './support.js';

const digest = Buffer.alloc(32, 0x5a);

void describe('swtpm processes', () => {
  let root: string;
  const started: SwtpmProcess[] = [];
  const start = async (name: string, transport: 'tcp' | 'unix'): Promise<SwtpmProcess> => {
    const p = await SwtpmProcess.start({ stateDir: join(root, name), transport });
    started.push(p);
    return p;
  };
  before(() => {
    requireSwtpmTools();
    root = mkdtempSync(join(tmpdir(), 'tl-swtpm-proc-'));
  });
  after(async () => {
    for (const p of started) {
      await p.stop();
      assertProcessGone(p.pid);
    }
    rmSync(root, { recursive: true, force: true });
  });

  void it('TCP: data and control on adjacent 127.0.0.1 ports, distinct per instance, reachable by tpm2-tools', async () => {
    const [a, b] = await Promise.all([start('a', 'tcp'), start('b', 'tcp')]);
    assert.ok(a !== undefined && b !== undefined);
    for (const p of [a, b]) {
      assert.ok(p.data.kind === 'tcp' && p.ctrl.kind === 'tcp');
      assert.equal(p.data.host, '127.0.0.1');
      assert.equal(p.ctrl.port, p.data.port + 1);
    }
    const ports = [a, b].flatMap((p) => (p.data.kind === 'tcp' && p.ctrl.kind === 'tcp' ? [p.data.port, p.ctrl.port] : []));
    assert.equal(new Set(ports).size, 4);
    tpm2ok('tpm2_startup', ['-c'], { TPM2TOOLS_TCTI: a.tcti });
    assert.match(tpm2ok('tpm2_getrandom', ['--hex', '4'], { TPM2TOOLS_TCTI: a.tcti }), /^[0-9a-f]{8}$/);
  });

  void it('unix: sockets in the state directory, mode 0600, reachable by tpm2-tools', async () => {
    const p = await start('u', 'unix');
    assert.ok(p.data.kind === 'unix' && p.ctrl.kind === 'unix');
    assert.equal(p.ctrl.path, `${p.data.path}.ctrl`);
    assert.equal(statSync(p.data.path).mode & 0o777, 0o600);
    tpm2ok('tpm2_startup', ['-c'], { TPM2TOOLS_TCTI: p.tcti });
    assert.match(tpm2ok('tpm2_getrandom', ['--hex', '4'], { TPM2TOOLS_TCTI: p.tcti }), /^[0-9a-f]{8}$/);
  });

  void it('control channel: capabilities, locality, and CMD_INIT as a TPM reset', async () => {
    const p = await start('ctrl', 'tcp');
    const caps = await p.control.getCapability();
    for (const bit of [PTM_CAP.INIT, PTM_CAP.SHUTDOWN, PTM_CAP.SET_LOCALITY, PTM_CAP.STOP]) assert.notEqual(caps & bit, 0);
    const tpm = new TpmClient(new SocketTransport(p.data), { timeoutMs: 5000 });
    try {
      await startup(tpm);
      // PCR 20 may be extended from locality 2 and up only (PC Client PCR attributes).
      await assert.rejects(pcrExtend(tpm, 20, [{ hashAlg: TPM_ALG.SHA256, digest }]), (e: unknown) => isTpmResponseError(e, RC.LOCALITY));
      await p.control.setLocality(2);
      await pcrExtend(tpm, 20, [{ hashAlg: TPM_ALG.SHA256, digest }]);
      await p.control.setLocality(0);
      await pcrExtend(tpm, 12, [{ hashAlg: TPM_ALG.SHA256, digest }]);
      assert.notDeepEqual((await pcrReadSha256(tpm, [12])).get(12), Buffer.alloc(32));
      // Power cycle without a new process: CMD_INIT, then TPM2_Startup(CLEAR) resets the PCRs.
      await p.control.init();
      await startup(tpm);
      assert.deepEqual((await pcrReadSha256(tpm, [12])).get(12), Buffer.alloc(32));
      assert.equal(typeof (await p.control.getTpmEstablished()), 'boolean');
      await assert.rejects(p.control.setLocality(5), RangeError);
    } finally {
      await tpm.close();
    }
  });

  void it('stop: orderly shutdown, exit code 0, pid file removed, state kept for the next start', async () => {
    const dir = join(root, 'persist');
    let p = await SwtpmProcess.start({ stateDir: dir, transport: 'unix' });
    let tpm = new TpmClient(new SocketTransport(p.data), { timeoutMs: 5000 });
    await startup(tpm);
    await tpm.close(); // swtpm serves one connection at a time
    tpm2ok('tpm2_nvdefine', ['0x01500050', '-C', 'o', '-s', '4', '-a', 'ownerread|ownerwrite'], { TPM2TOOLS_TCTI: p.tcti });
    const exit = await p.stop();
    assert.deepEqual(exit, { code: 0, signal: null });
    assertProcessGone(p.pid);
    assert.equal(existsSync(join(dir, 'swtpm.pid')), false);
    p = await SwtpmProcess.start({ stateDir: dir, transport: 'unix' });
    started.push(p);
    tpm = new TpmClient(new SocketTransport(p.data), { timeoutMs: 5000 });
    await startup(tpm);
    await tpm.close();
    assert.match(tpm2ok('tpm2_getcap', ['handles-nv-index'], { TPM2TOOLS_TCTI: p.tcti }), /0x1500050/);
  });

  void it('a start that cannot work fails with swtpm’s own message and leaves no process', async () => {
    const notADir = join(root, 'file');
    writeFileSync(notADir, 'x');
    await assert.rejects(SwtpmProcess.start({ stateDir: join(notADir, 'state'), transport: 'tcp', startTimeoutMs: 5000 }), (e: unknown) => isTrustlaunchError(e, 'UNAVAILABLE'));
    // swtpm itself refusing: a state file it cannot read.
    const bad = join(root, 'bad-state');
    mkdirSync(bad);
    writeFileSync(join(bad, 'tpm2-00.permall'), 'not a TPM state');
    const t0 = performance.now();
    await assert.rejects(SwtpmProcess.start({ stateDir: bad, transport: 'tcp', startTimeoutMs: 5000 }), (e: unknown) => isTrustlaunchError(e, 'UNAVAILABLE') && /swtpm/.test(e.message));
    assert.ok(performance.now() - t0 < 5000);
  });

  void it('a parent that dies without cleaning up takes its swtpm with it (parent-death signal)', async () => {
    const processModule = fileURLToPath(new URL('../../../src/tpm/swtpm/process.ts', import.meta.url));
    const code = [
      `import { SwtpmProcess } from ${JSON.stringify(processModule)};`,
      `const p = await SwtpmProcess.start({ stateDir: ${JSON.stringify(join(root, 'orphan'))}, transport: 'tcp' });`,
      'process.stdout.write(`${p.pid}\\n`);',
      "process.kill(process.pid, 'SIGKILL');",
    ].join('\n');
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const signal = await new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_c, s) => resolve(s)));
    assert.equal(signal, 'SIGKILL');
    const pid = Number(out.trim());
    assert.ok(Number.isInteger(pid) && pid > 0, `child said ${JSON.stringify(out)}`);
    for (let i = 0; i < 100; i++) {
      try {
        process.kill(pid, 0);
      } catch {
        break;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    assertProcessGone(pid);
  });

  void it('a stopped swtpm refuses control commands with a typed error, and stop() is idempotent', async () => {
    const p = await start('gone', 'tcp');
    await p.stop();
    await assert.rejects(p.control.getCapability(), (e: unknown) => isTrustlaunchError(e, 'TPM_TRANSPORT_ERROR'));
    assert.deepEqual(await p.stop(), { code: 0, signal: null });
    const tpm = new TpmClient(new SocketTransport(p.data), { timeoutMs: 1000 });
    await assert.rejects(getRandom(tpm, 4), (e: unknown) => isTrustlaunchError(e, 'TPM_TRANSPORT_ERROR'));
    await tpm.close();
  });
});
