// What the mini-domain sends for a VM (DESIGN.md §4.2 step 6), checked with the verifier's
// own tools (src/tpm verifyQuote and checkReplay): the quote is over the platform PCRs
// with qualifying data SHA-256(canonical claims); the claims carry the hypervisor's kernel
// digest and the channel's host key; changing any claim afterwards (a hostile dom0 on the
// wire) breaks the qualifying-data check.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { describe, it } from 'node:test';
import { formatSshPublicKey } from '../../../src/crypto/ssh-keys.js';
import { sshFingerprint } from '../../../src/crypto/fingerprints.js';
import { canonicalBytes } from '../../../src/protocol/canonical-json.js';
import { sha256 } from '../../../src/protocol/digest.js';
import { isTrustlaunchError } from '../../../src/protocol/errors.js';
import { newNonce } from '../../../src/protocol/nonce.js';
import { EvidenceSchema, type Evidence } from '../../../src/protocol/messages.js';
import { PLATFORM_PCRS } from '../../../src/protocol/pcrs.js';
import type { MiniDomainCapability, VmBoot } from '../../../src/node/hypervisor/index.js';
import { claimsDigest, launchClaims, makeEvidence } from '../../../src/node/minidomain/evidence.js';
import { eventsFromJson } from '../../../src/tpm/eventlog/json.js';
import { checkReplay } from '../../../src/tpm/eventlog/replay.js';
import { verifyQuote } from '../../../src/tpm/quote/verify.js';
import { bootTestNode, tpmOf } from '../hypervisor/node-fixture.js';

const sshKey = (): string => formatSshPublicKey(generateKeyPairSync('ed25519').publicKey);

async function reportedVm(launch?: { nonce: string; hostname: string; authorizedKey?: string }) {
  const minis: MiniDomainCapability[] = [];
  const boots: VmBoot[] = [];
  const t = await bootTestNode({
    miniDomain: ({ capability }) => (minis.push(capability), { stop: () => Promise.resolve() }),
    vmRunner: (b) => (boots.push(b), Promise.resolve({ stop: () => Promise.resolve() })),
  });
  await t.node.dom0.launchMiniDomain(Buffer.from(t.image));
  const vm = await t.node.dom0.buildVm({ name: 'vm-e', image: Buffer.from('the kernel'), ...(launch === undefined ? {} : { launch }) });
  await t.node.dom0.startVm(vm.vmId);
  const hostKey = sshKey();
  boots[0]?.capability.channel.send({ v: 1, type: 'host-key', key: hostKey });
  const mini = minis[0] as MiniDomainCapability;
  const report = await mini.waitForVmReport(vm.vmId, 5000);
  return { t, mini, report, hostKey, kernel: vm.kernelDigest };
}

function verify(evidence: Evidence, akPublic: Uint8Array): void {
  const parsed = EvidenceSchema.parse(JSON.parse(JSON.stringify(evidence)));
  const verified = verifyQuote(parsed.quote, { akPublic, qualifyingData: sha256(canonicalBytes(parsed.claims)) });
  assert.deepEqual([...verified.pcrs.keys()].sort((a, b) => a - b), [...PLATFORM_PCRS]);
  checkReplay(eventsFromJson(parsed.eventLog), verified.pcrs);
}

void describe('launch evidence', () => {
  void it('binds nonce, kernel digest, host key and authorized key; verifies and replays', async () => {
    const authorizedKey = sshKey();
    const launch = { nonce: newNonce(), hostname: 'vm-e.example', authorizedKey };
    const { t, mini, report, hostKey, kernel } = await reportedVm(launch);
    const now = new Date('2026-05-01T00:00:00Z');
    const claims = launchClaims(mini.nodeId, report, now);
    assert.deepEqual(claims, {
      nodeId: 'node-1',
      vmId: 'vm-e',
      nonce: launch.nonce,
      hostname: 'vm-e.example',
      kernel,
      sshHostKey: hostKey,
      authorizedKeyFp: sshFingerprint(authorizedKey),
      time: Math.floor(now.getTime() / 1000),
    });
    const device = tpmOf(mini);
    const ak = await device.ensureAttestationKey('ecc-p256');
    const evidence = await makeEvidence({ device, ak, claims, eventLog: mini.eventLog() });
    assert.deepEqual(evidence.claims, claims);
    verify(evidence, ak.public);
    assert.deepEqual(claimsDigest(claims), sha256(canonicalBytes(claims)));

    // A hostile dom0 rewriting any claim in transit: the quote no longer vouches for it.
    for (const change of [{ nonce: newNonce() }, { sshHostKey: sshKey() }, { hostname: 'evil.example' }, { kernel: `sha256:${'0'.repeat(64)}` }, { time: claims.time + 1 }] as const) {
      assert.throws(() => verify({ ...evidence, claims: { ...evidence.claims, ...change } }, ak.public), (e) => isTrustlaunchError(e, 'QUALIFYING_DATA_MISMATCH'), JSON.stringify(change));
    }
    await t.node.shutdown();
  });

  void it('refuses to make claims without dom0\'s metadata (there is no nonce to bind)', async () => {
    const { t, mini, report } = await reportedVm();
    assert.equal(report.launch, null);
    assert.throws(() => launchClaims(mini.nodeId, report, new Date()), (e) => isTrustlaunchError(e, 'MALFORMED_REQUEST'));
    await t.node.shutdown();
  });

  void it('the claims\' host key is the channel\'s, never anything dom0 said', async () => {
    const { t, mini, report, hostKey } = await reportedVm({ nonce: newNonce(), hostname: 'a.example', authorizedKey: sshKey() });
    const claims = launchClaims(mini.nodeId, report, new Date());
    assert.equal(claims.sshHostKey, hostKey);
    assert.notEqual(claims.sshHostKey, report.launch?.authorizedKey);
    await t.node.shutdown();
  });
});
