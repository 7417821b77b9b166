// A node running QEMU VMs (`vm.backend: qemu`) against the real CA, driven through dom0's
// API as the manager drives it: the guest bundle's blobs PUT, then POST /v1/vms with the
// manifest's digest.
//  - A hostile dom0 types a forged host key on the serial console (the console is dom0's):
//    the attested key is the one the guest sent on its virtio-serial channel — the key its
//    sshd presents, with which a strict `ssh` logs in — never the forged one.
//  - Memory per VM is QEMU's `-m`; the node refuses VMs beyond its memory.
//  - Stop, delete and a node restart leave no QEMU process, no forwarded port, no directory.
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { verifyReceipt } from '../../../../src/crypto/receipts.js';
import { isTrustlaunchError } from '../../../../src/protocol/errors.js';
import { newNonce } from '../../../../src/protocol/nonce.js';
import { sha256Digest } from '../../../../src/protocol/digest.js';
import type { VmView } from '../../../../src/node/dom0/vms.js';
import { readManifestFile, type GuestBundle } from '../../../../src/node/vm/qemu/guest-image.js';
import { holdsListener } from '../../../../src/node/vm/proc.js';
import type { QemuVmBackend } from '../../../../src/node/vm/qemu/index.js';
import { startCluster, waitForAttestation, type Cluster } from '../../support/cluster.js';
import { portIsFree, run, ssh } from '../support.js';
import { BOOT_MS, guest, qemuProcessesNaming, waitUntil } from './support.js';
import { processExists } from '../../../support/qemu.js';
import { requireCommand } from '../../../support/system.js';

let cluster: Cluster;
let g: GuestBundle;
let manifestDigest: string;

const backendOf = (c: Cluster): QemuVmBackend => {
  const b = c.node.backend;
  if (b.kind !== 'qemu') throw new Error(`the node runs ${b.kind} VMs`);
  return b;
};

/** The manager's calls for a bundle: the parts first, the manifest last (docs/manager.md). */
async function putBundle(c: Cluster): Promise<string> {
  const { bytes: manifest } = readManifestFile(join(g.dir, 'manifest.json'));
  const blobs = [readFileSync(g.kernelPath), readFileSync(g.initrdPath), readFileSync(g.cmdlinePath), manifest];
  let last = '';
  for (const body of blobs) {
    const { digest } = await c.dom0.call<{ digest: string }>('PUT', `/v1/images/${sha256Digest(body)}`, { raw: { body, contentType: 'application/octet-stream', length: body.length } });
    last = digest;
  }
  return last;
}

async function create(vmId: string, memoryMiB = 256): Promise<{ view: VmView; nonce: string; domainId: number }> {
  const nonce = newNonce();
  const view = await cluster.dom0.call<VmView>('POST', '/v1/vms', { body: { vmId, image: manifestDigest, nonce, hostname: `${vmId}.qemu.test`, authorizedKey: cluster.key.publicKey, memoryMiB } });
  const domain = cluster.node.hypervisor.dom0.vms().find((v) => v.name === vmId && v.state === 'running');
  assert.ok(domain, `VM ${vmId} runs on the node`);
  return { view, nonce, domainId: domain.vmId };
}

/** Nothing of the VM is left: no QEMU (found in /proc by executable, not by asking the backend), the port free, the directory gone. */
async function assertGone(what: string, i: { qemuPid: number; sshPort: number; dir: string }): Promise<void> {
  assert.equal(await waitUntil(() => !processExists(i.qemuPid), 10_000), true, `${what}: QEMU ${i.qemuPid} is gone`);
  assert.deepEqual(qemuProcessesNaming(i.dir), [], `${what}: no QEMU names the VM's directory`);
  assert.equal(await portIsFree(i.sshPort), true, `${what}: port ${i.sshPort} is free`);
  assert.equal(readdirSync(join(cluster.init.paths.runtime, 'vms')).includes(i.dir.split('/').pop() as string), false, `${what}: its directory is gone`);
}

before(async () => {
  requireCommand('ssh-keyscan');
  g = guest();
  cluster = await startCluster({ config: (c) => ((c['vm'] as Record<string, unknown>)['backend'] = 'qemu') });
  await cluster.ca.admin.addAllowlist({ name: 'debian-guest', kernel: g.manifest.kernel, initrd: g.manifest.initrd, cmdline: g.manifest.cmdline });
  manifestDigest = await putBundle(cluster);
  assert.equal(manifestDigest, g.digest);
});
after(async () => {
  await cluster?.dispose();
});

void describe('a node with QEMU VMs', () => {
  void it('a host key a hostile dom0 writes to the serial console is never the one attested: the channel\'s is, and sshd presents it', async () => {
    const backend = backendOf(cluster);
    const forged = (await run('ssh-keygen', ['-y', '-f', cluster.key.path])).stdout.trim(); // any valid key that is not the VM's
    assert.match(forged, /^ssh-ed25519 /);
    const { nonce, domainId } = await create('vm-console');
    // dom0 owns the console: it types a perfectly formed host-key message and a bare key line, again and again while the guest boots.
    const forgery = `{"v":1,"type":"host-key","key":"${forged}"}\n${forged}\n`;
    const typing = setInterval(() => {
      try {
        backend.consoleInput(domainId, forgery);
      } catch {
        // the VM is gone
      }
    }, 100);
    let view: VmView;
    try {
      view = await waitForAttestation(cluster, 'vm-console', BOOT_MS);
    } finally {
      clearInterval(typing);
    }
    assert.equal(view.attestation.state, 'attested', JSON.stringify(view));
    assert.deepEqual([view.kernel, view.initrd, view.cmdline], [g.manifest.kernel, g.manifest.initrd, g.manifest.cmdline]);
    const endpoint = backend.endpoint(domainId);
    assert.deepEqual(view.ssh, { host: '127.0.0.1', port: endpoint?.sshPort }, "dom0 reports the backend's forwarded port");

    // The receipt, from the CA, verified with its keys: the key the channel carried.
    const answer = await cluster.ca.client.receipt(nonce);
    const claims = await verifyReceipt(answer.receipt, { keys: cluster.ca.material.identity.receiptKeys, issuer: cluster.ca.material.identity.issuer, expectedNonce: nonce });
    assert.notEqual(claims.ssh_host_key, forged);
    assert.deepEqual([claims.kernel, claims.initrd, claims.cmdline], [g.manifest.kernel, g.manifest.initrd, g.manifest.cmdline]);

    // What the guest's sshd presents is the attested key; a strict ssh trusting it logs in.
    await backend.waitForGuest(domainId, 'certificate-installed', BOOT_MS);
    const port = endpoint?.sshPort as number;
    const scan = await run('ssh-keyscan', ['-T', '20', '-t', 'ed25519', '-p', String(port), '127.0.0.1']);
    const presented = scan.stdout.split('\n').filter((l) => l.startsWith(`[127.0.0.1]:${port} `)).map((l) => l.split(' ').slice(1).join(' '));
    assert.deepEqual(presented, [claims.ssh_host_key], scan.stderr);
    const login = await ssh({ port, key: cluster.key, knownHosts: `[127.0.0.1]:${port} ${claims.ssh_host_key}\n`, command: 'echo attested-key-ok', timeoutMs: 60_000 });
    assert.equal(login.status, 0, login.stderr);
    assert.equal(login.stdout.trim(), 'attested-key-ok');
    const withForged = await ssh({ port, key: cluster.key, knownHosts: `[127.0.0.1]:${port} ${forged}\n`, command: 'true', timeoutMs: 60_000 });
    assert.equal(withForged.status, 255, 'the forged key is not the server\'s');

    // The forgery never reached the channel; the console dom0 reads holds no key of the VM.
    assert.deepEqual(cluster.node.hypervisor.securityEvents().filter((e) => e.kind === 'VM_CHANNEL_VIOLATION'), []);
    assert.equal(backend.channelStats(domainId)?.droppedFromGuest, 0);
    const serial = backend.console(domainId) ?? '';
    assert.match(serial, /trustlaunch-guest: .*host key generated/);
    assert.ok(!serial.includes((claims.ssh_host_key as string).split(' ')[1] as string), 'the VM\'s key never appears on the console');

    // The node's status names the accelerator it chose.
    const node = await cluster.dom0.call<{ vm: { backend: string; accelerator: { accel: string; reason: string } } }>('GET', '/v1/node');
    assert.equal(node.vm.backend, 'qemu');
    assert.ok(['kvm', 'tcg'].includes(node.vm.accelerator.accel), JSON.stringify(node.vm));
    await cluster.dom0.call('DELETE', '/v1/vms/vm-console');
  });

  void it("gives each VM its memory as QEMU's -m and refuses VMs beyond the node's memory", async () => {
    const backend = backendOf(cluster);
    // The node offers 2048 MiB; each QEMU VM is charged its memory plus 64 MiB for QEMU itself.
    const big = await create('vm-big', 1024);
    const i = backend.inspect(big.domainId);
    assert.ok(i);
    assert.equal(i.argv[i.argv.indexOf('-m') + 1], '1024');
    assert.equal(i.memoryMiB, 1024);
    const vmsBefore = cluster.node.hypervisor.dom0.vms().filter((v) => v.state !== 'destroyed').length;
    await assert.rejects(create('vm-too-big', 1024), (e) => isTrustlaunchError(e, 'CAPACITY_EXCEEDED'));
    await assert.rejects(create('vm-tiny', 32), (e) => isTrustlaunchError(e, 'MALFORMED_REQUEST'));
    assert.equal(cluster.node.hypervisor.dom0.vms().filter((v) => v.state !== 'destroyed').length, vmsBefore, 'nothing else runs');
    assert.deepEqual(backend.usage().map((u) => u.name), ['vm-big']);
    assert.equal(backend.capacity().chargedBytes, (1024 + 64) * 1024 * 1024);
    const fits = await create('vm-fits', 512);
    const j = backend.inspect(fits.domainId);
    assert.equal(j?.memoryMiB, 512);
    // Two VMs, two forwarded ports, each held by its own QEMU.
    assert.ok(j !== undefined && j.sshPort !== i.sshPort);
    assert.equal(holdsListener(i.qemuPid, i.sshPort) && holdsListener(j.qemuPid, j.sshPort), true);
    assert.equal(holdsListener(j.qemuPid, i.sshPort), false);
    for (const id of ['vm-big', 'vm-fits']) await cluster.dom0.call('DELETE', `/v1/vms/${id}`);
    assert.equal(backend.capacity().chargedBytes, 0);
  });

  void it('stop, delete and a node restart leave no QEMU process, no forwarded port and no directory behind', async () => {
    let backend = backendOf(cluster);
    const a = await create('vm-stopped');
    const ia = backend.inspect(a.domainId);
    assert.ok(ia && processExists(ia.qemuPid));
    const stopped = await cluster.dom0.call<VmView>('POST', '/v1/vms/vm-stopped/stop');
    assert.equal(stopped.state, 'stopped');
    await assertGone('stop', ia);

    const b = await create('vm-deleted');
    const ib = backend.inspect(b.domainId);
    assert.ok(ib && processExists(ib.qemuPid));
    await cluster.dom0.call('DELETE', '/v1/vms/vm-deleted');
    await assertGone('delete', ib);

    const c = await create('vm-restarted');
    const ic = backend.inspect(c.domainId);
    assert.ok(ic && processExists(ic.qemuPid));
    await cluster.stopNode();
    await assertGone('node shutdown', ic);
    await cluster.restartNode();
    backend = backendOf(cluster);
    assert.deepEqual(backend.reaped, [], 'a clean shutdown left nothing to reap');
    assert.deepEqual(readdirSync(join(cluster.init.paths.runtime, 'ports')), []);
    assert.deepEqual(readdirSync(join(cluster.init.paths.runtime, 'vms')), []);
    assert.deepEqual(qemuProcessesNaming(cluster.init.paths.runtime), []);
  });
});
