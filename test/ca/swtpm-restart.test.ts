// A swtpm restarted under a registered node (DESIGN.md §3.4, issue 6): the real CA service,
// the real hypervisor (measured boot, launch gate, mediated device) on a real swtpm, and the
// mini-domain's own registration (credential activation) and evidence functions.
//   1. the node registers and one launch is affirmed;
//   2. swtpm is killed and started again over the same state from outside (a power cycle:
//      PCRs reset; NV, the EKs and the persistent AK survive);
//   3. evidence quoted WITHOUT re-measurement is contraindicated — with the hypervisor's log
//      (it no longer replays to the quoted PCRs: EVENT_LOG_REPLAY_MISMATCH) and with a log
//      that does replay to the reset PCRs (nothing measured: PLATFORM_NOT_TRUSTED, the
//      platform reference values) — each a stored contraindicated receipt, no host
//      certificate, and a decision in the CA's log;
//   4. once the hypervisor re-measures, a fresh launch is affirmed again.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { decodeReceiptUnverified, formatSshPublicKey, generateKeyPair, verifyHostCertificate, verifyReceipt } from '../../src/crypto/index.js';
import { parseCertificate } from '../../src/crypto/x509.js';
import { FIRMWARE, hypervisorMeasurement } from '../../src/node/boot-chain.js';
import { bootConfigBytes, bootHypervisor, parseBootConfig, type HypervisorNode, type MiniDomainCapability } from '../../src/node/hypervisor/index.js';
import { openMiniDomainDevice } from '../../src/node/minidomain/device.js';
import { makeEvidence } from '../../src/node/minidomain/evidence.js';
import { readCaCertificate, readRegistration } from '../../src/node/minidomain/nv-records.js';
import { registerNode, type Registered } from '../../src/node/minidomain/registration.js';
import { sha256Digest } from '../../src/protocol/digest.js';
import { isTrustlaunchError, type ErrorCode } from '../../src/protocol/errors.js';
import { LaunchClaimsSchema, type Evidence, type LaunchClaims } from '../../src/protocol/messages.js';
import { newNonce } from '../../src/protocol/nonce.js';
import { PLATFORM_PCRS } from '../../src/protocol/pcrs.js';
import type { AuthDevice } from '../../src/tpm/auth-device.js';
import { SwtpmAuthDevice } from '../../src/tpm/swtpm/swtpm-device.js';
import { assertProcessGone, requireSwtpmTools } from '../tpm/swtpm/support.js';
import { tempDir } from '../support/system.js';
import { startTestCa, type TestCa } from './support/ca.js';

const NODE_ID = 'swtpm-restart-node';
const KERNEL = sha256Digest('a kernel on the allowlist');

/** Launch claims as the mini-domain makes them for one VM (fresh nonce and host key). */
function claimsFor(vmId: string): LaunchClaims {
  return LaunchClaimsSchema.parse({
    nodeId: NODE_ID,
    vmId,
    nonce: newNonce(),
    hostname: `${vmId}.trustlaunch.test`,
    kernel: KERNEL,
    sshHostKey: formatSshPublicKey(generateKeyPair('ed25519').publicKey),
    time: Math.floor(Date.now() / 1000),
  });
}

describe('a swtpm restarted without re-measurement', () => {
  const tmp = tempDir('tl-ca-swtpm-restart-');
  let ca: TestCa;
  /** The test's own handle on the swtpm: it plays the outside world (the power button); the node never hands it out. */
  let swtpm: SwtpmAuthDevice;
  let node: HypervisorNode;
  let cap: MiniDomainCapability;
  /** The mini-domain's device: the hypervisor-mediated handle. */
  let device: AuthDevice;
  let registered: Registered;

  /** The mini-domain's evidence for a fresh launch, over whatever the PCRs hold now. */
  const launchEvidence = (vmId: string, eventLog = cap.eventLog()): Promise<Evidence> => makeEvidence({ device, ak: registered.ak, claims: claimsFor(vmId), eventLog });

  /** Posts evidence; the CA's refusal (code, step, the contraindicated receipt it carries), or its affirmation. */
  async function submit(evidence: Evidence): Promise<{ affirmed: true; receipt: string; hostCertificate: string } | { affirmed: false; code: string; step: unknown; receipt: unknown }> {
    try {
      const r = await ca.client.evidence(evidence);
      return { affirmed: true, receipt: r.receipt, hostCertificate: r.hostCertificate };
    } catch (e) {
      if (!isTrustlaunchError(e)) throw e;
      return { affirmed: false, code: e.code, step: e.detail?.['step'], receipt: e.detail?.['receipt'] };
    }
  }

  async function assertAffirmed(evidence: Evidence): Promise<void> {
    const r = await submit(evidence);
    assert.ok(r.affirmed, `expected an affirmation, got ${JSON.stringify(r)}`);
    const claims = await verifyReceipt(r.receipt, { keys: ca.material.identity.receiptKeys, issuer: ca.material.config.issuer, expectedNonce: evidence.claims.nonce });
    assert.deepEqual([claims['ear.status'], claims.node, claims.sub], ['affirming', NODE_ID, evidence.claims.vmId]);
    verifyHostCertificate(r.hostCertificate, { caPublicKey: ca.material.sshCaPublicKey, hostKey: evidence.claims.sshHostKey, principal: evidence.claims.hostname });
    const decisions = (await ca.admin.decisions({ node: NODE_ID, limit: 1000 })).decisions.filter((d) => d.nonce === evidence.claims.nonce);
    assert.deepEqual(
      decisions.map((d) => [d.kind, d.outcome, d.vm, d.receiptJti]),
      [['evidence', 'affirming', evidence.claims.vmId, claims.jti]],
    );
  }

  /** The refusal with its code and step; a verifiable contraindicated receipt stored for the nonce; no host certificate; one decision. */
  async function assertContraindicated(evidence: Evidence, code: ErrorCode, step: string): Promise<void> {
    const nonce = evidence.claims.nonce;
    const r = await submit(evidence);
    assert.ok(!r.affirmed, `expected ${code}, the CA affirmed`);
    assert.deepEqual([r.code, r.step], [code, step]);
    const stored = await ca.client.receipt(nonce);
    assert.equal(stored.receipt, r.receipt, 'the refusal carries the receipt the CA stored for the nonce');
    assert.equal(stored.hostCertificate, undefined, 'no host certificate for a contraindicated launch');
    const claims = await verifyReceipt(stored.receipt, { keys: ca.material.identity.receiptKeys, issuer: ca.material.config.issuer, expectedNonce: nonce });
    assert.deepEqual([claims['ear.status'], claims.reason?.code, claims.reason?.step, claims.sub], ['contraindicated', code, step, evidence.claims.vmId]);
    const decisions = (await ca.admin.decisions({ node: NODE_ID, limit: 1000 })).decisions.filter((d) => d.nonce === nonce);
    assert.deepEqual(
      decisions.map((d) => [d.kind, d.outcome, d.code, d.step, d.receiptJti]),
      [['evidence', 'contraindicated', code, step, claims.jti]],
    );
    // Sent again, the same evidence gets no second chance: the nonce is spent, the "no" stays.
    const again = await submit(evidence);
    assert.ok(!again.affirmed);
    assert.equal(decodeReceiptUnverified((await ca.client.receipt(nonce)).receipt).claims['ear.status'], 'contraindicated');
  }

  before(async () => {
    requireSwtpmTools();
    ca = await startTestCa({ databaseUrl: `sqlite:${join(tmp.path, 'ca.db')}`, dir: join(tmp.path, 'ca') });
    const image = randomBytes(2 * 4096 + 17);
    const bootConfig = parseBootConfig({ v: 1, nodeId: NODE_ID, launchPolicy: { miniDomainDigest: sha256Digest(image) } });
    const hypervisor = hypervisorMeasurement();
    swtpm = new SwtpmAuthDevice({ nodeDir: join(tmp.path, 'node', 'device') });
    const caps: MiniDomainCapability[] = [];
    node = await bootHypervisor({
      bootConfig,
      platform: { firmware: FIRMWARE, hypervisor },
      openAuthDevice: () => swtpm,
      miniDomain: ({ capability }) => (caps.push(capability), { stop: () => Promise.resolve() }),
    });
    await node.dom0.launchMiniDomain(image);
    const launched = caps[0];
    assert.ok(launched !== undefined, 'the mini-domain passed the launch gate');
    cap = launched;
    device = await openMiniDomainDevice(cap);

    // The operator's side: swtpm_localca's root and intermediate trusted, this node's boot as platform reference values.
    await ca.trustManufacturer(parseCertificate(readFileSync(swtpm.layout.rootCertificate, 'utf8')));
    await ca.trustManufacturer(parseCertificate(readFileSync(swtpm.layout.issuerCertificate, 'utf8')));
    await ca.admin.addPlatform({ name: 'swtpm-node', hypervisor: hypervisor.digest, minidomain: sha256Digest(image), firmware: FIRMWARE.digest, bootConfig: sha256Digest(bootConfigBytes(bootConfig)) });
    await ca.admin.addAllowlist({ name: 'kernel', kernel: KERNEL });
    const { token } = await ca.admin.createToken();
    registered = await registerNode({ nodeId: NODE_ID, device, token, caUrl: ca.url, bootstrap: ca.material.root.certificate, eventLog: () => cap.eventLog() });
  });
  after(async () => {
    const pid = swtpm.process?.pid;
    await node?.shutdown();
    if (pid !== undefined) assertProcessGone(pid);
    await ca?.dispose();
    tmp.dispose();
  });

  it('registers through credential activation on the swtpm and gets a launch affirmed', async () => {
    assert.equal(registered.record.ek, 'rsa2048', "swtpm's EKs are RSA-2048 and P-384: the mini-domain's preference picks RSA");
    assert.equal((await ca.admin.node(NODE_ID)).status, 'active');
    const registrations = (await ca.admin.decisions({ node: NODE_ID, limit: 1000 })).decisions.filter((d) => d.kind === 'registration');
    assert.deepEqual(
      registrations.map((d) => d.outcome),
      ['challenged', 'registered'],
    );
    await assertAffirmed(await launchEvidence('vm-before-restart'));
  });

  it('after swtpm is killed and started again, launches quoted without re-measurement are contraindicated; after the hypervisor re-measures, one is affirmed', async () => {
    const nvCertificate = await readCaCertificate(device);
    const oldPid = swtpm.process?.pid;
    assert.ok(oldPid !== undefined);
    // The outside world: swtpm dies (no orderly shutdown) and is started again over the same state directory.
    swtpm.process?.signal('SIGKILL');
    await swtpm.process?.exited;
    assertProcessGone(oldPid);
    await swtpm.powerOn();
    assert.notEqual(swtpm.process?.pid, oldPid, 'a new swtpm process');

    // What a power cycle leaves: PCRs at zero; NV (CA certificate, registration record) and the persistent AK as they were.
    for (const [i, value] of await device.pcrRead(PLATFORM_PCRS)) assert.deepEqual(Buffer.from(value), Buffer.alloc(32), `PCR ${i} is reset`);
    assert.equal((await readCaCertificate(device))?.sha256Fingerprint, nvCertificate?.sha256Fingerprint);
    assert.deepEqual(await readRegistration(device), registered.record);
    assert.deepEqual(await device.ensureAttestationKey(registered.record.ek), registered.ak);

    // 1. The hypervisor's log as it stands: the quote is genuine, but the log no longer replays to the quoted (reset) PCRs.
    await assertContraindicated(await launchEvidence('vm-unmeasured'), 'EVENT_LOG_REPLAY_MISMATCH', 'eventLog');
    // 2. A log that does replay to the reset PCRs — none — shows no trusted platform: the reference values refuse it.
    await assertContraindicated(await launchEvidence('vm-unmeasured-empty-log', []), 'PLATFORM_NOT_TRUSTED', 'platform');
    assert.equal(node.securityEvents().filter((e) => e.kind === 'PCRS_REMEASURED').length, 0, 'nothing re-measured so far');

    // The hypervisor re-measures (every logged digest extended again, in order): attestation works again, with the same AK.
    assert.equal(await node.remeasure(), 'replayed');
    assert.equal(node.securityEvents().filter((e) => e.kind === 'PCRS_REMEASURED').length, 1);
    await assertAffirmed(await launchEvidence('vm-after-remeasure'));

    // The decisions log, in order: one affirmation before the restart, two refusals, one affirmation after.
    const evidence = (await ca.admin.decisions({ node: NODE_ID, limit: 1000 })).decisions.filter((d) => d.kind === 'evidence' && d.vm !== undefined);
    const firstOf = (vm: string): [string, string | undefined] | undefined => {
      const d = evidence.find((x) => x.vm === vm);
      return d === undefined ? undefined : [d.outcome, d.code];
    };
    assert.deepEqual(
      ['vm-before-restart', 'vm-unmeasured', 'vm-unmeasured-empty-log', 'vm-after-remeasure'].map(firstOf),
      [
        ['affirming', undefined],
        ['contraindicated', 'EVENT_LOG_REPLAY_MISMATCH'],
        ['contraindicated', 'PLATFORM_NOT_TRUSTED'],
        ['affirming', undefined],
      ],
    );
    assert.deepEqual(
      evidence.filter((d) => d.outcome === 'affirming').map((d) => d.vm),
      ['vm-before-restart', 'vm-after-remeasure'],
      'no affirmation for a launch quoted without re-measurement',
    );
  });
});
