// The launch policy is frozen at boot and no path changes it; capabilities expose no
// reference to the device, the hypervisor, or any domain's memory object.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isTrustlaunchError } from '../../../src/protocol/errors.js';
import { sha256Digest } from '../../../src/protocol/digest.js';
import { bootConfigBytes, parseBootConfig, type MiniDomainCapability } from '../../../src/node/hypervisor/index.js';
import { Hypervisor } from '../../../src/node/hypervisor/hypervisor.js';
import { DomainMemory, PhysicalMemory } from '../../../src/node/hypervisor/memory.js';
import { Platform } from '../../../src/node/hypervisor/platform.js';
import { DeviceSlot } from '../../../src/node/hypervisor/device-slot.js';
import { SoftwareTpmDevice } from '../../../src/tpm/sim/device.js';
import { bootTestNode } from './node-fixture.js';

const GOOD = { v: 1, nodeId: 'node-1', launchPolicy: { miniDomainDigest: sha256Digest('x') } };

/** Every object reachable from `root` through own properties (getters included), bounded. */
function reachable(root: unknown): unknown[] {
  const seen = new Set<unknown>();
  const queue: unknown[] = [root];
  while (queue.length > 0 && seen.size < 10_000) {
    const v = queue.shift();
    if ((typeof v !== 'object' && typeof v !== 'function') || v === null || seen.has(v)) continue;
    seen.add(v);
    for (const key of Reflect.ownKeys(v)) {
      const desc = Object.getOwnPropertyDescriptor(v, key);
      if (desc === undefined) continue;
      if ('value' in desc) queue.push(desc.value);
      else if (desc.get !== undefined) queue.push(desc.get.call(v));
    }
  }
  return [...seen];
}

void describe('boot configuration', () => {
  void it('parses strictly with BOOT_CONFIG_INVALID', () => {
    assert.deepEqual(parseBootConfig(GOOD), GOOD);
    for (const bad of [
      { ...GOOD, extra: 1 },
      { ...GOOD, v: 2 },
      { ...GOOD, nodeId: 'Node_1' },
      { ...GOOD, launchPolicy: { miniDomainDigest: 'sha256:XYZ' } },
      { ...GOOD, launchPolicy: { miniDomainDigest: GOOD.launchPolicy.miniDomainDigest, more: true } },
      { v: 1, nodeId: 'node-1' },
      null,
      'config',
    ]) {
      assert.throws(() => parseBootConfig(bad), (e) => isTrustlaunchError(e, 'BOOT_CONFIG_INVALID'), JSON.stringify(bad));
    }
    assert.equal(bootConfigBytes(parseBootConfig(GOOD)).toString(), `{"launchPolicy":{"miniDomainDigest":"${GOOD.launchPolicy.miniDomainDigest}"},"nodeId":"node-1","v":1}`);
  });

  void it('refuses to boot on a malformed configuration, before touching the device', async () => {
    let opened = false;
    const { bootHypervisor } = await import('../../../src/node/hypervisor/index.js');
    await assert.rejects(
      bootHypervisor({
        bootConfig: { ...GOOD, launchPolicy: {} },
        platform: { firmware: { description: 'f', digest: sha256Digest('f') }, hypervisor: { description: 'h', digest: sha256Digest('h') } },
        openAuthDevice: () => {
          opened = true;
          throw new Error('must not be opened');
        },
      }),
      (e) => isTrustlaunchError(e, 'BOOT_CONFIG_INVALID'),
    );
    assert.equal(opened, false);
  });
});

void describe('frozen launch policy', () => {
  void it('cannot be changed by any operation; each attempt throws LAUNCH_POLICY_FROZEN and is recorded', async () => {
    const t = await bootTestNode();
    const policy = t.node.launchPolicy;
    assert.equal(policy.miniDomainDigest, t.digest);
    assert.ok(Object.isFrozen(policy));
    const attempts: (() => unknown)[] = [
      () => ((policy as { miniDomainDigest: string }).miniDomainDigest = sha256Digest('evil')),
      () => Object.assign(policy, { miniDomainDigest: sha256Digest('evil') }),
      () => Object.defineProperty(policy, 'miniDomainDigest', { value: sha256Digest('evil') }),
      () => delete (policy as { miniDomainDigest?: string }).miniDomainDigest,
      () => void Object.setPrototypeOf(policy, { miniDomainDigest: sha256Digest('evil') }),
      () => Reflect.set(policy, 'nodeId', 'other'),
    ];
    for (const attempt of attempts) assert.throws(attempt, (e) => isTrustlaunchError(e, 'LAUNCH_POLICY_FROZEN'));
    assert.equal(policy.miniDomainDigest, t.digest);
    assert.equal(t.node.status().launchPolicy.miniDomainDigest, t.digest);
    assert.equal(t.node.securityEvents().filter((e) => e.kind === 'LAUNCH_POLICY_FROZEN').length, attempts.length);
    // And the gate still enforces the original digest.
    await assert.rejects(t.node.dom0.launchMiniDomain(Buffer.from('evil')), (e) => isTrustlaunchError(e, 'LAUNCH_DIGEST_MISMATCH'));
    await t.node.dom0.launchMiniDomain(t.image);
    await t.node.shutdown();
  });

  void it("is a copy: changing the caller's configuration object after boot changes nothing", async () => {
    const { bootHypervisor } = await import('../../../src/node/hypervisor/index.js');
    const t = await bootTestNode();
    await t.node.shutdown();
    const config = { v: 1, nodeId: 'node-2', launchPolicy: { miniDomainDigest: t.digest } };
    const node = await bootHypervisor({
      bootConfig: config,
      platform: { firmware: { description: 'f', digest: sha256Digest('f') }, hypervisor: { description: 'h', digest: sha256Digest('h') } },
      openAuthDevice: () => t.device,
    });
    config.launchPolicy.miniDomainDigest = sha256Digest('evil');
    assert.equal(node.launchPolicy.miniDomainDigest, t.digest);
    await node.dom0.launchMiniDomain(t.image);
    await node.shutdown();
  });
});

void describe('capabilities', () => {
  void it('are frozen and reach no device, hypervisor, platform, or memory object', async () => {
    const minis: MiniDomainCapability[] = [];
    let vmCap: unknown;
    const t = await bootTestNode({
      miniDomain: ({ capability }) => (minis.push(capability), { stop: () => Promise.resolve() }),
      vmRunner: ({ capability }) => ((vmCap = capability), Promise.resolve({ stop: () => Promise.resolve() })),
    });
    await t.node.dom0.launchMiniDomain(t.image);
    const vm = await t.node.dom0.buildVm({ name: 'vm-a', image: Buffer.from('guest kernel') });
    await t.node.dom0.startVm(vm.vmId);
    const forbidden = [SoftwareTpmDevice, Hypervisor, Platform, DomainMemory, PhysicalMemory, DeviceSlot];
    for (const [name, cap] of [['dom0', t.node.dom0], ['mini-domain', minis[0]], ['vm', vmCap], ['node', t.node]] as const) {
      assert.ok(Object.isFrozen(cap), `${name} capability is not frozen`);
      for (const v of reachable(cap)) {
        for (const cls of forbidden) assert.ok(!(v instanceof cls), `${name} capability reaches a ${cls.name}`);
      }
    }
    // dom0 holds no VM channel and no device handle; only the mini-domain holds the device.
    const dom0Keys = Object.keys(t.node.dom0).sort();
    assert.deepEqual(dom0Keys, ['assignDevice', 'buildVm', 'deassignDevice', 'destroyVm', 'devices', 'dma', 'domainId', 'iommu', 'launchMiniDomain', 'memory', 'miniDomain', 'mmio', 'startVm', 'stopMiniDomain', 'vm', 'vms']);
    assert.ok(!reachable(t.node.dom0).some((v) => typeof v === 'object' && v !== null && 'channel' in v));
    await t.node.shutdown();
  });
});
