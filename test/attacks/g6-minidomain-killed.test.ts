// G6 — a crashed, hung or stopped mini-domain leaves running VMs untouched, and a restarted
// one passes the launch gate again before it touches the device.
//   - killed (its code dies): the device is quarantined at once, the VM keeps serving SSH,
//     dom0 hands the image over again, the gate measures it (a second PCR 12 event), and the
//     CA — whose reference says every PCR 12 event is the mini-domain digest — attests a new VM;
//   - stopped by a hostile dom0 (denial of service, which is out of scope to prevent but
//     must be harmless): same, VMs untouched, and only dom0's own relaunch brings it back;
//   - hung (a CA that accepts connections and never answers): the watchdog expires, the
//     hypervisor destroys it as hung and the node relaunches it through the gate.
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { readFile, writeFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { PCR } from '../../src/protocol/pcrs.js';
import { DOMID_IO } from '../../src/node/hypervisor/index.js';
import { createVm, startCluster, waitForAttestation, type Cluster } from '../node/support/cluster.js';
import { ssh } from '../node/vm/support.js';
import { eventually, hostileDom0 } from './support.js';

void describe('G6: the mini-domain dies, VMs live on, the restart passes the gate', () => {
  let c: Cluster;
  let vm: Awaited<ReturnType<typeof createVm>>;
  let port: number;
  let knownHosts: string;
  before(async () => {
    c = await startCluster();
    await c.waitForLog('registered');
    vm = await createVm(c, { vmId: 'vm-g6' });
    const done = await waitForAttestation(c, vm.vmId);
    assert.equal(done.attestation.state, 'attested');
    port = done.ssh?.port as number;
    knownHosts = `@cert-authority ${vm.hostname} ${(await c.ca.client.keys()).sshCaKey}\n`;
  });
  after(async () => {
    await c.dispose();
  });

  const sshWorks = async (): Promise<void> => {
    let r = await ssh({ port, key: c.key, knownHosts, hostKeyAlias: vm.hostname, command: 'echo still-here' });
    for (let i = 0; i < 20 && r.status !== 0; i++) r = await ssh({ port, key: c.key, knownHosts, hostKeyAlias: vm.hostname, command: 'echo still-here' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'still-here');
  };

  void it('killed: device quarantined at once, the VM keeps serving, the relaunch passes the gate and attests', async () => {
    const node = c.node.hypervisor;
    const launches = node.dom0.miniDomain().launches;
    await node.reportMiniDomainCrash('killed by the test');
    // Before anything else runs, the dead domain has lost the device.
    assert.equal(node.status().authDevice.owner, DOMID_IO);
    await sshWorks();
    await eventually('the relaunch', () => node.dom0.miniDomain().state === 'running' && node.dom0.miniDomain().launches === launches + 1);
    const pcr12 = node.eventLog().filter((e) => e.pcrIndex === PCR.MINIDOMAIN);
    assert.equal(pcr12.length, launches + 1);
    assert.ok(pcr12.every((e) => `sha256:${e.digests[0]?.digest.toString('hex')}` === c.init.measurements.minidomain));
    assert.equal(node.securityEvents().filter((e) => e.kind === 'MINIDOMAIN_CRASHED').length, 1);
    assert.equal((await c.dom0.call<{ state: string }>('GET', `/v1/vms/${vm.vmId}`)).state, 'running');
    const after = await createVm(c, { vmId: 'vm-g6-after-crash' });
    assert.equal((await waitForAttestation(c, after.vmId)).attestation.state, 'attested');
    node.checkInvariants();
  });

  void it('stopped by a hostile dom0: VMs untouched, device quarantined, nothing relaunches it but dom0 itself', async () => {
    const node = c.node.hypervisor;
    const dom0 = hostileDom0(c);
    const launches = node.dom0.miniDomain().launches;
    await dom0.capability.stopMiniDomain();
    assert.equal(node.status().authDevice.owner, DOMID_IO);
    await sshWorks();
    const pending = await createVm(c, { vmId: 'vm-g6-while-stopped' });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(node.dom0.miniDomain().state, 'absent');
    assert.equal((await c.dom0.call<{ attestation: { state: string } }>('GET', `/v1/vms/${pending.vmId}`)).attestation.state, 'booting');
    await c.node.dom0.loader.launch();
    assert.equal(node.dom0.miniDomain().launches, launches + 1);
    // The new mini-domain picks up the VM that waited.
    assert.equal((await waitForAttestation(c, pending.vmId)).attestation.state, 'attested');
  });

  void it('hung on a CA that never answers: the watchdog destroys it as hung, the node relaunches it; VMs keep serving', async () => {
    const sockets = new Set<Socket>();
    const blackhole: Server = createServer((s) => sockets.add(s));
    await new Promise<void>((r) => blackhole.listen(0, '127.0.0.1', r));
    const address = blackhole.address();
    const url = `https://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`;
    const config = JSON.parse(await readFile(c.init.paths.config, 'utf8')) as { ca: { url: string } };
    const realUrl = config.ca.url;
    config.ca.url = url;
    await writeFile(c.init.paths.config, JSON.stringify(config));
    try {
      await c.stopNode();
      await c.restartNode({ limits: { miniDomainWatchdogMs: 800 }, agent: { watchdogKickMs: 100, stepTimeoutMs: 300, requestTimeoutMs: 60_000, backoff: { initialMs: 50, maxMs: 200 } } });
      const node = c.node.hypervisor;
      const stuck = await createVm(c, { vmId: 'vm-g6-hung' });
      port = (await c.dom0.call<{ ssh: { port: number } }>('GET', `/v1/vms/${stuck.vmId}`)).ssh.port;
      await eventually('a watchdog expiry', () => node.securityEvents().some((e) => e.kind === 'MINIDOMAIN_CRASHED' && e.detail['watchdog'] === true), 15_000);
      await eventually('the relaunch after it', () => node.dom0.miniDomain().launches >= 2 && node.dom0.miniDomain().state === 'running', 15_000);
      // The VM runs on (its SSH server answers; its host key is not certified: check it by key).
      const report = await c.dom0.call<{ state: string; attestation: { state: string } }>('GET', `/v1/vms/${stuck.vmId}`);
      assert.equal(report.state, 'running');
      assert.notEqual(report.attestation.state, 'attested');
      const r = await ssh({ port, key: c.key, knownHosts: `[127.0.0.1]:${port} ${'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl'}\n`, command: 'true' });
      assert.equal(r.status, 255, 'the VM does not answer at all');
      assert.match(r.stderr, /host key|Host key/);
      node.checkInvariants();
    } finally {
      config.ca.url = realUrl;
      await writeFile(c.init.paths.config, JSON.stringify(config));
      for (const s of sockets) s.destroy();
      blackhole.close();
    }
  });
});
