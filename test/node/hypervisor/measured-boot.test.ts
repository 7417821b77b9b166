// Measured boot: the log replays to the device's PCRs, a quote through the mini-domain's
// mediated handle passes the CA's own quote verification and log replay, and after a
// device power cycle attestation fails until the hypervisor re-measures.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { toBase64url } from '../../../src/protocol/base64url.js';
import { canonicalBytes } from '../../../src/protocol/canonical-json.js';
import { isTrustlaunchError } from '../../../src/protocol/errors.js';
import { sha256 } from '../../../src/protocol/digest.js';
import { PCR, PLATFORM_PCRS } from '../../../src/protocol/pcrs.js';
import type { AuthDevice } from '../../../src/tpm/auth-device.js';
import { EV } from '../../../src/tpm/eventlog/event-types.js';
import type { TcgEvent } from '../../../src/tpm/eventlog/event.js';
import { checkReplay, replay } from '../../../src/tpm/eventlog/replay.js';
import { verifyQuote } from '../../../src/tpm/quote/verify.js';
import type { MiniDomainCapability } from '../../../src/node/hypervisor/index.js';
import { FIRMWARE, HYPERVISOR_IMAGE, bootTestNode, tpmOf } from './node-fixture.js';

/** What the CA does with evidence: verify the quote, then replay the log against the quoted PCRs. */
async function attest(device: AuthDevice, log: readonly TcgEvent[]): Promise<void> {
  const ak = await device.ensureAttestationKey('ecc-p256');
  const qualifyingData = randomBytes(32);
  const q = await device.quote(ak, PLATFORM_PCRS, qualifyingData);
  const values = await device.pcrRead(PLATFORM_PCRS);
  const pcrs = Object.fromEntries([...values].map(([i, v]) => [String(i), Buffer.from(v).toString('hex')]));
  const verified = verifyQuote({ attest: toBase64url(q.attest), signature: toBase64url(q.signature), pcrs: { sha256: pcrs } }, { akPublic: ak.public, qualifyingData });
  checkReplay(log, verified.pcrs);
}

async function launched(): Promise<{ t: Awaited<ReturnType<typeof bootTestNode>>; cap: MiniDomainCapability }> {
  const caps: MiniDomainCapability[] = [];
  const t = await bootTestNode({ miniDomain: ({ capability }) => (caps.push(capability), { stop: () => Promise.resolve() }) });
  await t.node.dom0.launchMiniDomain(t.image);
  const cap = caps[0];
  assert.ok(cap);
  return { t, cap };
}

void describe('measured boot', () => {
  void it('measures firmware, hypervisor and boot configuration in the TCG shape, replaying to the PCRs', async () => {
    const t = await bootTestNode();
    const log = t.node.eventLog();
    assert.deepEqual(
      log.map((e) => [e.pcrIndex, e.eventType]),
      [
        [PCR.PLATFORM_FIRMWARE, EV.EV_S_CRTM_CONTENTS],
        [PCR.HYPERVISOR, EV.EV_IPL],
        [PCR.BOOT_CONFIG, EV.EV_ACTION],
      ],
    );
    assert.equal(log[0]?.digests[0]?.digest.toString('hex'), FIRMWARE.digest.slice(7));
    assert.equal(log[1]?.digests[0]?.digest.toString('hex'), HYPERVISOR_IMAGE.digest.slice(7));
    assert.equal(log[0]?.event.toString(), FIRMWARE.description);
    // PCR 5's event data is the canonical boot configuration: the CA reads the launch policy from it.
    const config = { v: 1, nodeId: 'node-1', launchPolicy: { miniDomainDigest: t.digest } };
    assert.deepEqual(log[2]?.event, canonicalBytes(config));
    assert.deepEqual(log[2]?.digests[0]?.digest, sha256(canonicalBytes(config)));
    const pcrs = await t.device.pcrRead(PLATFORM_PCRS);
    const expected = replay(log);
    for (const i of PLATFORM_PCRS) assert.deepEqual(Buffer.from(pcrs.get(i) ?? []), expected[i], `PCR ${i}`);
    assert.deepEqual(Buffer.from(pcrs.get(PCR.MINIDOMAIN) ?? []), Buffer.alloc(32));
    await t.node.shutdown();
  });

  void it("hands out copies of the log: changing one changes nothing", async () => {
    const { t, cap } = await launched();
    const copy = cap.eventLog();
    (copy[0]?.digests[0]?.digest as Buffer).fill(0);
    copy.pop();
    assert.equal(t.node.eventLog().length, 4);
    await attest(tpmOf(cap), t.node.eventLog());
    await t.node.shutdown();
  });

  void it('a quote through the mediated handle verifies and replays from the log', async () => {
    const { t, cap } = await launched();
    await attest(tpmOf(cap), cap.eventLog());
    await t.node.shutdown();
  });

  void it('after a device power cycle attestation fails until the hypervisor re-measures', async () => {
    const { t, cap } = await launched();
    await t.device.powerOff();
    await t.device.powerOn(); // the outside world: swtpm restarted, PCRs back to zero
    await assert.rejects(attest(tpmOf(cap), cap.eventLog()), (e) => isTrustlaunchError(e, 'EVENT_LOG_REPLAY_MISMATCH'));
    assert.equal(await t.node.remeasure(), 'replayed');
    assert.equal(t.node.securityEvents().filter((e) => e.kind === 'PCRS_REMEASURED').length, 1);
    await attest(tpmOf(cap), cap.eventLog());
    assert.equal(await t.node.remeasure(), 'in-step');
    await t.node.shutdown();
  });

  void it("the mini-domain's own powerOn resets the device and is re-measured at once", async () => {
    const { t, cap } = await launched();
    await tpmOf(cap).powerOn();
    await attest(tpmOf(cap), cap.eventLog());
    assert.equal(t.node.securityEvents().filter((e) => e.kind === 'PCRS_REMEASURED').length, 1);
    await t.node.shutdown();
  });

  void it('leaves PCRs that are neither reset nor logged alone and records it', async () => {
    const { t, cap } = await launched();
    await t.device.pcrExtend(PCR.PLATFORM_FIRMWARE, randomBytes(32));
    const before = await t.device.pcrRead(PLATFORM_PCRS);
    assert.equal(await t.node.remeasure(), 'unexpected');
    assert.deepEqual(await t.device.pcrRead(PLATFORM_PCRS), before);
    assert.equal(t.node.securityEvents().filter((e) => e.kind === 'PCR_STATE_UNEXPECTED').length, 1);
    await assert.rejects(attest(tpmOf(cap), cap.eventLog()), (e) => isTrustlaunchError(e, 'EVENT_LOG_REPLAY_MISMATCH'));
    await t.node.shutdown();
  });
});
