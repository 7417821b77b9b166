// The node on every auth-device backend it can run here, end to end against the real CA:
// `pci-nvstore` (claim 2: storage only, the TPM engine in the mini-domain) and `swtpm`
// (a real TPM 2.0 through the project's TPM client, manufactured with swtpm_setup). Each
// registers on first boot and gets a process VM attested.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { requireCommand } from '../support/system.js';
import { createVm, startCluster, waitForAttestation } from './support/cluster.js';

for (const device of ['pci-nvstore', 'swtpm'] as const) {
  void describe(`node on ${device}`, () => {
    void it('registers, attests a VM, and shows the device kind to dom0', async () => {
      if (device === 'swtpm') {
        requireCommand('swtpm');
        requireCommand('swtpm_setup');
      }
      const c = await startCluster({ device });
      try {
        await c.waitForLog('registered', 60_000);
        const node = await c.dom0.call<{ device: { kind: string; bdf: string } }>('GET', '/v1/node');
        assert.deepEqual(node.device, { kind: device, bdf: device === 'pci-nvstore' ? '00:06.0' : '00:1f.0' });
        const vm = await createVm(c, { vmId: `vm-${device}` });
        const done = await waitForAttestation(c, vm.vmId);
        assert.equal(done.attestation.state, 'attested', JSON.stringify(done));
        const nodes = await c.ca.admin.listNodes();
        assert.deepEqual(nodes.map((n) => n.status), ['active']);
      } finally {
        await c.dispose();
      }
    });
  });
}
