// The `trustlaunch node` commands as an operator runs them (the real CLI in a child
// process): `init --json` prints the measurements and the endorsement root and writes a
// node directory with secret files 0600; `serve` boots, serves dom0, runs a VM, and on
// SIGTERM exits 0 leaving no process behind; `status` reads the running node; `measurements`
// agrees with init.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { JsonClient } from '../../src/http/client.js';
import { exec, type ExecResult } from '../support/exec.js';
import { sha256Digest } from '../../src/protocol/digest.js';
import { newNonce } from '../../src/protocol/nonce.js';
import { toBase64url } from '../../src/protocol/base64url.js';
import { defaultGuestImage } from '../../src/node/vm/process/index.js';
import { requireCommand, tempDir } from '../support/system.js';
import { clientKey, portIsFree } from './vm/support.js';

const BIN = new URL('../../bin/trustlaunch.js', import.meta.url).pathname;

function cli(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<ExecResult> {
  return exec(process.execPath, [BIN, ...args], { env: { ...process.env, ...env } });
}

/** Processes whose command line mentions `needle` (pgrep -f), other than pgrep itself. */
async function processesMentioning(needle: string): Promise<string[]> {
  const { stdout } = await exec(requireCommand('pgrep'), ['-af', needle]);
  return stdout.split('\n').filter((l) => l.trim() !== '' && !l.includes('pgrep'));
}

void describe('trustlaunch node (CLI)', () => {
  const dir = tempDir('tl-node-cli-');
  after(() => dir.dispose());
  const nodeDir = join(dir.path, 'n1');

  void it('init --json prints the measurements and writes the node directory', async () => {
    const r = await cli(['node', 'init', '--dir', nodeDir, '--node-id', 'cli-node', '--device', 'pci-nvstore', '--listen', '127.0.0.1:0', '--attestation', 'off', '--memory', '1024', '--json']);
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { nodeId: string; device: string; measurements: Record<string, string>; endorsementRoots: string[]; measurementsFile: string };
    assert.equal(out.nodeId, 'cli-node');
    assert.equal(out.device, 'pci-nvstore');
    assert.deepEqual(Object.keys(out.measurements).sort(), ['bootConfig', 'firmware', 'hypervisor', 'minidomain']);
    for (const d of Object.values(out.measurements)) assert.match(d, /^sha256:[0-9a-f]{64}$/);
    assert.deepEqual(JSON.parse(readFileSync(out.measurementsFile, 'utf8')), out.measurements);
    assert.equal(sha256Digest(readFileSync(join(nodeDir, 'minidomain.img'))), out.measurements['minidomain']);
    const boot = JSON.parse(readFileSync(join(nodeDir, 'boot-config.json'), 'utf8')) as { launchPolicy: { miniDomainDigest: string } };
    assert.equal(boot.launchPolicy.miniDomainDigest, out.measurements['minidomain']);
    assert.match(readFileSync(out.endorsementRoots[0] as string, 'utf8'), /BEGIN CERTIFICATE/);
    for (const secret of ['dom0.token', 'node.json', 'tls/server-key.pem', 'tls/ca-key.pem', 'device/nvstore.img', 'device/manufacturer-ca.key']) {
      assert.equal(statSync(join(nodeDir, secret)).mode & 0o077, 0, `${secret} is open to others`);
    }
    // Nothing is replaced by accident.
    const again = await cli(['node', 'init', '--dir', nodeDir, '--json']);
    assert.notEqual(again.status, 0);
    assert.equal((JSON.parse(again.stdout) as { error: { code: string } }).error.code, 'CONFLICT');
    const m = await cli(['node', 'measurements', '--dir', nodeDir, '--json']);
    assert.deepEqual(JSON.parse(m.stdout), out.measurements);
  });

  void it('serve runs the node; SIGTERM stops it and every VM process', async () => {
    const child = spawn(process.execPath, [BIN, 'node', 'serve', '--dir', nodeDir, '--json', '--log-level', 'silent'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const deadline = Date.now() + 30_000;
    while (!stdout.includes('}') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const started = JSON.parse(stdout) as { url: string; device: string; miniDomain: { state: string } };
    assert.equal(started.device, 'pci-nvstore', stderr);
    assert.equal(started.miniDomain.state, 'running');

    const status = await cli(['node', 'status', '--dir', nodeDir, '--json']);
    assert.equal(status.status, 0, status.stderr);
    assert.equal((JSON.parse(status.stdout) as { node: { health: string } }).node.health, 'ok');

    const key = await clientKey();
    const dom0 = new JsonClient({ baseUrl: started.url, ca: readFileSync(join(nodeDir, 'tls/ca.pem'), 'utf8'), token: readFileSync(join(nodeDir, 'dom0.token'), 'utf8').trim() });
    const image = defaultGuestImage();
    await dom0.call('POST', '/v1/vms', { body: { vmId: 'vm-cli', imageData: toBase64url(image), nonce: newNonce(), hostname: 'vm-cli.test', authorizedKey: key.publicKey, memoryMiB: 64 } });
    let view: { ssh?: { port: number }; attestation: { state: string } } = { attestation: { state: 'booting' } };
    while (view.attestation.state === 'booting' && Date.now() < deadline) {
      view = await dom0.call('GET', '/v1/vms/vm-cli');
      await new Promise((r) => setTimeout(r, 50));
    }
    await dom0.close();
    const port = view.ssh?.port as number;
    assert.equal(await portIsFree(port), false, 'the VM does not listen');
    assert.ok((await processesMentioning(join(nodeDir, 'runtime'))).length > 0, 'no VM process found to stop');

    child.kill('SIGTERM');
    assert.equal(await exited, 0, stderr);
    assert.deepEqual(await processesMentioning(join(nodeDir, 'runtime')), []);
    assert.equal(await portIsFree(port), true);
    key.dispose();
  });

  void it('refuses serve without a directory, and a join without its CA or token', async () => {
    const r = await cli(['node', 'serve', '--json']);
    assert.equal(r.status, 2);
    const j = await cli(['node', 'serve', '--dir', nodeDir, '--manager', 'https://127.0.0.1:1', '--json'], { TRUSTLAUNCH_JOIN_TOKEN: '' });
    assert.equal(j.status, 2);
    assert.equal((JSON.parse(j.stdout) as { error: { code: string } }).error.code, 'MALFORMED_REQUEST');
  });
});
