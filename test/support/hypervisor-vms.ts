// For the hypervisor's VM tests (test/node/hypervisor/vm.test.ts, bundle.test.ts): a test
// node whose mini-domain is running, with the VM runner the test gives (by default one that
// records each boot), and SSH host keys to report from a VM.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import type { DomainExecution, MiniDomainCapability, VmBoot } from '../../src/node/hypervisor/index.js';
import { bootTestNode, type TestNode } from '../node/hypervisor/node-fixture.js';

/** A fresh Ed25519 public key as an OpenSSH line, built by hand (RFC 8709 §4) rather than by the code under test. */
export function sshKey(): string {
  const raw = generateKeyPairSync('ed25519').publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
  const type = Buffer.from('ssh-ed25519');
  const blob = Buffer.concat([Buffer.from([0, 0, 0, type.length]), type, Buffer.from([0, 0, 0, 32]), raw]);
  return `ssh-ed25519 ${blob.toString('base64')}`;
}

/** A test node with its mini-domain launched; `boots` collects what the default runner was given. */
export async function nodeWithMiniDomain(runner?: (boot: VmBoot) => Promise<DomainExecution>): Promise<{ t: TestNode; mini: MiniDomainCapability; boots: VmBoot[] }> {
  const minis: MiniDomainCapability[] = [];
  const boots: VmBoot[] = [];
  const t = await bootTestNode({
    miniDomain: ({ capability }) => (minis.push(capability), { stop: () => Promise.resolve() }),
    vmRunner: runner ?? ((boot) => (boots.push(boot), Promise.resolve({ stop: () => Promise.resolve() }))),
  });
  await t.node.dom0.launchMiniDomain(t.image);
  const mini = minis[0];
  assert.ok(mini);
  return { t, mini, boots };
}
