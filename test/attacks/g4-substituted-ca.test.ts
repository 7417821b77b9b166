// G4 — the CA certificate the protocol uses comes from the device, never from a file or
// message dom0 controls. After the node registered, a hostile dom0 sets up its own CA (a
// real CA service it controls, configured to affirm this node and its guest), puts that
// CA's certificate in place of the bootstrap certificate on the node's disk and points the
// node's configuration at it, then restarts the node. Detected: the mini-domain still pins
// the certificate in device NV, so TLS to the fake CA fails and the VM stays unattested
// (CA_UNREACHABLE shown to dom0). Nothing accepted: the fake CA receives no registration
// and no evidence, issues no receipt; the real CA has no receipt for the nonce. With the
// real URL back (the fake certificate still on disk) the same node attests normally.
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { parseCertificate } from '../../src/crypto/x509.js';
import { startTestCa, type TestCa } from '../ca/support/ca.js';
import { createVm, startCluster, waitForAttestation, type Cluster } from '../node/support/cluster.js';
import { eventually, hostileDom0, userFetchesReceipt } from './support.js';

void describe('G4: a substituted CA certificate has no effect', () => {
  let c: Cluster;
  let fake: TestCa;
  before(async () => {
    c = await startCluster();
    await c.waitForLog('registered');
    fake = await startTestCa({ databaseUrl: 'sqlite::memory:' });
    // The attacker's CA would affirm anything from this node, were it ever asked.
    for (const root of c.init.endorsementRoots) await fake.trustManufacturer(parseCertificate(await readFile(root, 'utf8')));
    const m = c.init.measurements;
    await fake.admin.addPlatform({ name: 'any', hypervisor: m.hypervisor, minidomain: m.minidomain, firmware: m.firmware, bootConfig: m.bootConfig });
    await fake.admin.addAllowlist({ name: 'any', kernel: c.guestDigest });
  });
  after(async () => {
    await c.dispose();
    await fake.dispose();
  });

  void it('the fake CA on disk and in the config gets nothing; the device\'s CA certificate is what the node pins', async () => {
    const dom0 = hostileDom0(c);
    const realUrl = c.init.config.ca.url;
    await writeFile(dom0.disk.caBootstrap, fake.material.root.certificate.pem);
    const config = JSON.parse(await readFile(dom0.disk.config, 'utf8')) as { ca: { url: string } };
    config.ca.url = fake.url;
    await writeFile(dom0.disk.config, JSON.stringify(config));
    await c.stopNode();
    const logStart = c.logs.length;
    await c.restartNode({ enrollToken: (await fake.admin.createToken()).token });

    const anchored = await c.waitForLog('anchored');
    assert.equal(anchored['ca'], c.ca.material.root.certificate.sha256Fingerprint, 'the node pinned something else than the device NV certificate');
    const vm = await createVm(c, { vmId: 'vm-g4' });
    await eventually('CA_UNREACHABLE', async () => (await c.dom0.call<{ attestation: { code?: string } }>('GET', '/v1/vms/vm-g4')).attestation.code === 'CA_UNREACHABLE');
    assert.ok(c.logs.slice(logStart).every((l) => l['event'] !== 'registered'), 'the node registered again');
    const view = await c.dom0.call<{ attestation: { state: string } }>('GET', '/v1/vms/vm-g4');
    assert.equal(view.attestation.state, 'attesting');
    // Nothing accepted anywhere.
    assert.deepEqual(await fake.admin.listNodes(), []);
    assert.deepEqual((await fake.admin.decisions()).decisions, []);
    await assert.rejects(fake.client.receipt(vm.nonce), (e) => (e as { code?: string }).code === 'NOT_FOUND');
    assert.equal(await userFetchesReceipt(c, vm.nonce), undefined);

    // The real URL back, the fake certificate still on disk: the node attests with the real CA.
    config.ca.url = realUrl;
    await writeFile(dom0.disk.config, JSON.stringify(config));
    await c.stopNode();
    await c.restartNode();
    const again = await createVm(c, { vmId: 'vm-g4-real' });
    assert.equal((await waitForAttestation(c, 'vm-g4-real')).attestation.state, 'attested');
    const claims = await userFetchesReceipt(c, again.nonce);
    assert.equal(claims?.['ear.status'], 'affirming');
    assert.deepEqual((await fake.admin.decisions()).decisions, []);
  });
});
