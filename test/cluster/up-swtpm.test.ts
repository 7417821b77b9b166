// The end-to-end launch on a real TPM 2.0 (issue 6): `up --device swtpm` gives each node its
// own swtpm (manufactured by swtpm_setup in the node's directory, EK certificates from a
// node-local swtpm_localca the CA trusts), and a user's `vm create` through the real manager
// and client SDK ends in a receipt verified against the CA's keys and a real `ssh` login with
// StrictHostKeyChecking=yes. When `up` stops — programmatically, on Ctrl-C, on SIGTERM — the
// swtpm process is gone (checked by its pid), and a resumed directory keeps its swtpm state.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { loadCaDirectory } from '../../src/ca/directory.js';
import { clusterPaths } from '../../src/cluster/layout.js';
import { verifyReceipt } from '../../src/crypto/receipts.js';
import { parseCertificate } from '../../src/crypto/x509.js';
import { swtpmLayout } from '../../src/tpm/swtpm/manufacture.js';
import { tempDir } from '../support/system.js';
import { assertProcessGone, requireSwtpmTools } from '../tpm/swtpm/support.js';
import { fileText, run, startCloud } from './support/cloud.js';
import { BIN, assertNothingLeft, portOf, startUp } from './support/up-process.js';

/** The swtpm a node directory's device runs: its pid (from swtpm's own pid file), checked to be a live swtpm over that state. */
function swtpmOf(nodeDir: string): { pid: number; stateDir: string } {
  const stateDir = swtpmLayout(join(nodeDir, 'device')).stateDir;
  const pid = Number(readFileSync(join(stateDir, 'swtpm.pid'), 'utf8').trim());
  assert.ok(Number.isInteger(pid) && pid > 1, `a pid in ${stateDir}/swtpm.pid`);
  const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  assert.ok(cmdline.some((a) => a.endsWith('swtpm')) && cmdline.includes('socket'), `pid ${pid} is swtpm: ${cmdline.join(' ')}`);
  assert.ok(cmdline.some((a) => a.includes(stateDir)), `pid ${pid} runs over ${stateDir}: ${cmdline.join(' ')}`);
  return { pid, stateDir };
}

/** How the mini-domain found its CA, start after start: `registered` (first boot) or `anchored` (from device NV), from DIR/logs/<id>.log. */
function anchorEvents(dir: string, id: string): string[] {
  return fileText(clusterPaths(dir).log(id))
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as { part?: unknown; event?: unknown })
    .filter((l) => l.part === 'minidomain' && (l.event === 'registered' || l.event === 'anchored'))
    .map((l) => String(l.event));
}

describe('up --device swtpm', () => {
  const tmp = tempDir('tl-up-swtpm-');
  after(() => tmp.dispose());

  it('vm create → receipt verified → ssh with StrictHostKeyChecking=yes, on a node with its own swtpm; no swtpm left after stop', async () => {
    requireSwtpmTools();
    const cloud = await startCloud({ nodes: 1, device: 'swtpm' });
    let pid: number | undefined;
    try {
      const node = cloud.cluster.nodes[0];
      assert.ok(node !== undefined);
      assert.equal(node.config.device.kind, 'swtpm');
      const status = node.hypervisor.status();
      assert.equal(status.authDevice.kind, 'swtpm');
      assert.match(status.authDevice.description, /^swtpm \S+ at unix /);
      const nodeDir = cloud.cluster.paths.node(node.config.nodeId);
      const swtpm = swtpmOf(nodeDir);
      pid = swtpm.pid;
      assert.ok(status.authDevice.description.includes(swtpm.stateDir), 'the socket is in the node directory');

      // The node registered with the EK certificate swtpm_localca issued in its directory.
      const issuer = parseCertificate(readFileSync(swtpmLayout(join(nodeDir, 'device')).issuerCertificate, 'utf8'));
      const [registered] = await cloud.cluster.caAdmin.listNodes();
      assert.deepEqual([registered?.id, registered?.status, registered?.ekCertificate.issuer], [node.config.nodeId, 'active', issuer.subject]);

      const client = await cloud.user.client();
      const created = await client.createVm({ image: 'guest', name: 'on-swtpm', expectKernel: cloud.cluster.summary.image.digest as `sha256:${string}` });
      const vmId = created.vm.vmId;
      assert.equal(created.launch.claims['ear.status'], 'affirming');
      assert.equal(created.probed, true, 'the SSH endpoint presented the attested key');
      // The receipt verifies independently with the CA directory's keys, bound to the client's nonce and this node.
      const material = await loadCaDirectory(cloud.cluster.paths.ca);
      const claims = await verifyReceipt(created.record.receipt, { keys: material.identity.receiptKeys, issuer: material.identity.issuer, expectedNonce: created.nonce });
      assert.deepEqual([claims['ear.status'], claims.node, claims.sub, claims.kernel, claims.ssh_host_key], ['affirming', node.config.nodeId, vmId, cloud.cluster.summary.image.digest, created.launch.hostKey]);
      const decisions = (await cloud.cluster.caAdmin.decisions({})).decisions.filter((d) => d.vm === vmId);
      assert.deepEqual(decisions.map((d) => [d.outcome, d.node, d.nonce, d.receiptJti]), [['affirming', node.config.nodeId, created.nonce, claims.jti]]);

      // A real OpenSSH login that trusts only what the client wrote from the receipt.
      const marker = `hello-from-${vmId}`;
      const { argv } = await client.sshArguments('on-swtpm', { command: ['echo', marker], extraOptions: ['BatchMode=yes', 'ConnectTimeout=10'] });
      assert.ok(argv.includes('StrictHostKeyChecking=yes') && argv.includes(`UserKnownHostsFile=${cloud.user.paths.knownHosts}`));
      const ssh = await run('ssh', argv);
      assert.equal(ssh.status, 0, ssh.stderr);
      assert.equal(ssh.stdout.trim(), marker);
      assert.equal(swtpmOf(nodeDir).pid, pid, 'the same swtpm throughout');
    } finally {
      await cloud.dispose();
    }
    assert.ok(pid !== undefined);
    assertProcessGone(pid);
  });

  it('the CLI: Ctrl-C leaves no swtpm; a resumed directory keeps its swtpm (anchored from NV, not registered again) and refuses another device; SIGTERM too', async () => {
    requireSwtpmTools();
    const dir = join(tmp.path, 'kept');
    const bad = await run(process.execPath, [BIN, 'up', '--device', 'tpm', '--dir', dir]);
    assert.equal(bad.status, 2, bad.stderr);
    assert.match(bad.stderr, /sim, swtpm, pci-nvstore/);

    const first = await startUp(['--nodes', '1', '--device', 'swtpm', '--dir', dir]);
    let firstPid = 0;
    try {
      const [n] = first.info.nodes;
      assert.ok(n !== undefined);
      assert.equal(n.device, 'swtpm');
      firstPid = swtpmOf(n.dir).pid;
      first.child.kill('SIGINT');
      assert.equal(await first.exited, 0);
    } finally {
      first.child.kill('SIGKILL');
    }
    assertProcessGone(firstPid);
    await assertNothingLeft(dir, [portOf(first.info.ca.url), portOf(first.info.manager.url), first.info.nodes[0]?.port ?? 0]);
    assert.deepEqual(anchorEvents(dir, 'node-1'), ['registered']);

    // A node's device is its identity: the directory cannot switch to another one.
    const conflict = await run(process.execPath, [BIN, 'up', '--dir', dir, '--device', 'sim', '--json']);
    assert.equal(conflict.status, 1, conflict.stderr);
    assert.equal((JSON.parse(conflict.stdout) as { error: { code: string } }).error.code, 'CONFLICT');
    await assertNothingLeft(dir, []);

    const second = await startUp(['--dir', dir, '--device', 'swtpm']);
    try {
      const [n] = second.info.nodes;
      assert.ok(n !== undefined);
      assert.equal(n.device, 'swtpm');
      const again = swtpmOf(n.dir);
      assert.notEqual(again.pid, firstPid, 'a new swtpm process over the same state');
      // The registration survived in the swtpm's NV: the mini-domain anchored from it.
      assert.deepEqual(anchorEvents(dir, 'node-1'), ['registered', 'anchored']);
      const env = { PATH: process.env['PATH'] ?? '', HOME: tmp.path, TRUSTLAUNCH_CONFIG_DIR: join(tmp.path, 'user'), ...second.info.env };
      assert.equal((await run(process.execPath, [BIN, 'ca', 'trust', second.info.ca.url, '--fingerprint', second.info.ca.fingerprint], { env })).status, 0);
      const created = await run(process.execPath, [BIN, 'vm', 'create', '--image', 'guest', '--json'], { env, timeoutMs: 120_000 });
      assert.equal(created.status, 0, created.stderr);
      second.child.kill('SIGTERM');
      assert.equal(await second.exited, 0);
      assertProcessGone(again.pid);
      await assertNothingLeft(dir, [portOf(second.info.ca.url), portOf(second.info.manager.url), n.port]);
    } finally {
      second.child.kill('SIGKILL');
    }
  });
});
