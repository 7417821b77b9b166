// Memory accounting and refusals of the process backend, through the real hypervisor:
// VMs beyond the capacity are refused with CAPACITY_EXCEEDED before anything runs; a
// malformed guest setup is refused before anything runs; usage reports real resident
// memory; a destroyed VM gives its charge back.
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isTrustlaunchError } from '../../../src/protocol/errors.js';
import { DEFAULT_MIN_CHARGE_BYTES, defaultGuestImage, launchProcessVm } from '../../../src/node/vm/process/index.js';
import { bootProcessNode, clientKey, type ClientKey, type ProcessNode } from './support.js';

const MIB = 1024 * 1024;

void describe('process VM capacity', () => {
  let pn: ProcessNode;
  let key: ClientKey;
  before(async () => {
    pn = await bootProcessNode({ capacityBytes: 3 * DEFAULT_MIN_CHARGE_BYTES + 10 * MIB });
    key = await clientKey();
  });
  after(async () => {
    await pn.close();
    key.dispose();
  });

  const setup = (name: string) => ({ hostname: `${name}.test`, authorizedKeys: [key.publicKey] });
  const nothingRuns = (): void => {
    assert.deepEqual(readdirSync(join(pn.runtimeRoot, 'vms')).length, pn.backend.usage().length, 'no directory beyond the running VMs');
    assert.deepEqual(readdirSync(join(pn.runtimeRoot, 'ports')).length, pn.backend.usage().length, 'no port beyond the running VMs');
  };

  void it('charges each VM at least the floor, refuses beyond the capacity, and frees on destroy', async () => {
    const a = await launchProcessVm(pn.node.dom0, pn.backend, { name: 'cap-a', image: defaultGuestImage(), setup: setup('cap-a') });
    const b = await launchProcessVm(pn.node.dom0, pn.backend, { name: 'cap-b', image: defaultGuestImage(), setup: setup('cap-b'), memoryBytes: 2 * DEFAULT_MIN_CHARGE_BYTES });
    assert.deepEqual(pn.backend.capacity(), { capacityBytes: 3 * DEFAULT_MIN_CHARGE_BYTES + 10 * MIB, chargedBytes: 3 * DEFAULT_MIN_CHARGE_BYTES, availableBytes: 10 * MIB, vms: 2 });
    const usage = pn.backend.usage();
    assert.deepEqual(usage.map((u) => [u.name, u.declaredBytes, u.chargedBytes]), [
      ['cap-a', a.info.memoryBytes, DEFAULT_MIN_CHARGE_BYTES],
      ['cap-b', 2 * DEFAULT_MIN_CHARGE_BYTES, 2 * DEFAULT_MIN_CHARGE_BYTES],
    ]);
    for (const u of usage) assert.ok(u.residentBytes > 10 * MIB, `${u.name} resident ${u.residentBytes} (node + sshd)`);

    // dom0's own check, before it builds anything.
    assert.throws(() => pn.backend.admit(0), (e) => isTrustlaunchError(e, 'CAPACITY_EXCEEDED'));
    const vmsBefore = pn.node.dom0.vms().length;
    await assert.rejects(launchProcessVm(pn.node.dom0, pn.backend, { name: 'cap-c', image: defaultGuestImage(), setup: setup('cap-c') }), (e) => isTrustlaunchError(e, 'CAPACITY_EXCEEDED'));
    assert.equal(pn.node.dom0.vms().length, vmsBefore, 'nothing was built');

    // The runner refuses too, if dom0 skips the check: the hypervisor destroys the domain and keeps the runner's code.
    const c = await pn.node.dom0.buildVm({ name: 'cap-c', image: defaultGuestImage(), guest: setup('cap-c') });
    await assert.rejects(pn.node.dom0.startVm(c.vmId), (e) => isTrustlaunchError(e, 'CAPACITY_EXCEEDED'));
    assert.equal(pn.node.dom0.vm(c.vmId).state, 'destroyed');
    nothingRuns();

    await pn.node.dom0.destroyVm(b.info.vmId);
    assert.equal(pn.backend.capacity().chargedBytes, DEFAULT_MIN_CHARGE_BYTES);
    const d = await launchProcessVm(pn.node.dom0, pn.backend, { name: 'cap-d', image: defaultGuestImage(), setup: setup('cap-d') });
    await pn.node.dom0.destroyVm(d.info.vmId);
    await pn.node.dom0.destroyVm(a.info.vmId);
    assert.deepEqual(pn.backend.capacity(), { capacityBytes: 3 * DEFAULT_MIN_CHARGE_BYTES + 10 * MIB, chargedBytes: 0, availableBytes: 3 * DEFAULT_MIN_CHARGE_BYTES + 10 * MIB, vms: 0 });
    nothingRuns();
  });

  void it('refuses a malformed guest setup before anything runs', async () => {
    const bad: unknown[] = [
      undefined,
      {},
      { hostname: 'ok.test', authorizedKeys: [] },
      { hostname: 'Not A Host', authorizedKeys: [key.publicKey] },
      { hostname: 'ok.test', authorizedKeys: [`${key.publicKey}\nssh-ed25519 AAAA`] },
      { hostname: 'ok.test', authorizedKeys: [`command="id" ${key.publicKey}`] },
      { hostname: 'ok.test', authorizedKeys: [key.publicKey], extra: 1 },
    ];
    for (const [i, guest] of bad.entries()) {
      const info = await pn.node.dom0.buildVm({ name: `bad-${i}`, image: defaultGuestImage(), guest });
      await assert.rejects(pn.node.dom0.startVm(info.vmId), (e) => isTrustlaunchError(e, 'MALFORMED_REQUEST'));
      assert.equal(pn.node.dom0.vm(info.vmId).state, 'destroyed');
      assert.equal(pn.backend.endpoint(info.vmId), undefined);
    }
    assert.equal(pn.backend.capacity().chargedBytes, 0);
    nothingRuns();
  });

  void it('an image that is not a program boots nothing and is cleaned up', async () => {
    const info = await pn.node.dom0.buildVm({ name: 'not-code', image: Buffer.from('\x7fELF this is not JavaScript {{{'), guest: setup('not-code') });
    await pn.node.dom0.startVm(info.vmId);
    await assert.rejects(pn.backend.waitForGuest(info.vmId, 'host-key', 10_000), (e) => isTrustlaunchError(e, 'VM_BOOT_FAILED'));
    const deadline = Date.now() + 10_000;
    while (pn.node.dom0.vm(info.vmId).state !== 'destroyed' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(pn.node.dom0.vm(info.vmId).state, 'destroyed');
    assert.match(pn.backend.console(info.vmId) ?? '', /SyntaxError/);
    while (pn.backend.usage().length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    nothingRuns();
  });
});
