// The `swtpm` auth device end to end: manufactured on first power-on in the node directory,
// endorsements (RSA-2048 and ECC P-384 EKs with certificates from NV), the persistent AK,
// credential activation for both EKs, quotes the CA's verifier accepts, PCRs, NV with the
// same error codes as the software TPM, and a power cycle: PCRs reset, NV and the AK stay.
// After every test the TPM holds no transient object and no session.
import assert from 'node:assert/strict';
import { X509Certificate, createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, afterEach, before, describe, it } from 'node:test';
import { toBase64url } from '../../../src/protocol/base64url.js';
import { isTrustlaunchError } from '../../../src/protocol/errors.js';
import { PLATFORM_PCRS } from '../../../src/protocol/pcrs.js';
import { NV_INDEX, type AttestationKey, type EkAlgorithm } from '../../../src/tpm/auth-device.js';
import { makeCredential } from '../../../src/tpm/crypto/credential.js';
import { publicKeyOf } from '../../../src/tpm/crypto/public-key.js';
import { verifierKey } from '../../../src/tpm/quote/attestation-key.js';
import { verifyQuote } from '../../../src/tpm/quote/verify.js';
import { parseTpmtPublic } from '../../../src/tpm/structures/public.js';
import { AK_HANDLE } from '../../../src/tpm/templates.js';
import { tpmDeviceFromSpec } from '../../../src/tpm/swtpm/device-spec.js';
import { HardwareTpmAuthDevice } from '../../../src/tpm/swtpm/hardware-device.js';
import { SwtpmAuthDevice } from '../../../src/tpm/swtpm/swtpm-device.js';
import { tempDir } from '../../support/system.js';
import { assertNoLoadedHandles, assertProcessGone, requireSwtpmTools } from './support.js';

const EKS: readonly EkAlgorithm[] = ['rsa2048', 'ecc-p384'];
const sha256 = (...parts: Uint8Array[]): Buffer => parts.reduce((h, p) => h.update(p), createHash('sha256')).digest();

function wireQuote(q: { attest: Uint8Array; signature: Uint8Array }, pcrs: ReadonlyMap<number, Uint8Array>) {
  return {
    attest: toBase64url(q.attest),
    signature: toBase64url(q.signature),
    pcrs: { sha256: Object.fromEntries([...pcrs].map(([i, v]) => [String(i), Buffer.from(v).toString('hex')])) },
  };
}

void describe('swtpm auth device', () => {
  let work: { path: string; dispose: () => void };
  let dev: SwtpmAuthDevice;
  const aks = new Map<EkAlgorithm, AttestationKey>();
  const akOf = (alg: EkAlgorithm): AttestationKey => {
    const ak = aks.get(alg);
    assert.ok(ak !== undefined);
    return ak;
  };

  before(async () => {
    requireSwtpmTools();
    work = tempDir('tl-swtpm-dev-');
    dev = new SwtpmAuthDevice({ nodeDir: work.path });
    await dev.powerOn();
  });
  afterEach(async () => {
    await assertNoLoadedHandles(dev.client);
  });
  after(async () => {
    const pid = dev.process?.pid;
    await dev.powerOff();
    if (pid !== undefined) assertProcessGone(pid);
    work.dispose();
  });

  void it('was manufactured in the node directory on first power-on; reached over a unix socket there', () => {
    assert.match(dev.description, /^swtpm \d+\.\d+\.\d+ at unix \/\S+\/swtpm\.sock$/);
    assert.equal(dev.kind, 'swtpm');
    assert.ok(dev.layout.stateDir.startsWith(work.path));
  });

  void it('endorsements: RSA-2048 and ECC P-384 EKs whose certificates certify them', async () => {
    const ends = await dev.endorsements();
    assert.deepEqual(
      ends.map((e) => e.algorithm),
      EKS,
    );
    for (const e of ends) {
      const cert = new X509Certificate(e.certificate);
      assert.deepEqual(cert.publicKey.export({ type: 'spki', format: 'der' }), publicKeyOf(parseTpmtPublic(e.public)).export({ type: 'spki', format: 'der' }));
      assert.ok(cert.checkIssued(new X509Certificate(readFileSync(dev.layout.issuerCertificate))));
    }
  });

  for (const alg of EKS) {
    void it(`ensureAttestationKey(${alg}): a persistent restricted signing key, the same on every call`, async () => {
      const ak = await dev.ensureAttestationKey(alg);
      assert.equal(ak.handle, AK_HANDLE[alg]);
      assert.doesNotThrow(() => verifierKey(ak.public));
      const again = await dev.ensureAttestationKey(alg);
      assert.deepEqual(again, ak);
      aks.set(alg, ak);
    });

    void it(`activateCredential with the ${alg} EK returns the secret; a credential for another AK is refused`, async () => {
      const ek = (await dev.endorsements()).find((e) => e.algorithm === alg);
      assert.ok(ek !== undefined);
      const ak = akOf(alg);
      const secret = randomBytes(32);
      const cred = makeCredential(parseTpmtPublic(ek.public), ak.name, secret);
      assert.deepEqual(Buffer.from(await dev.activateCredential(ak, alg, cred.credentialBlob, cred.encryptedSecret)), secret);
      const other = makeCredential(parseTpmtPublic(ek.public), Buffer.concat([ak.name.subarray(0, 2), randomBytes(32)]), secret);
      await assert.rejects(dev.activateCredential(ak, alg, other.credentialBlob, other.encryptedSecret), (e: unknown) => isTrustlaunchError(e, 'CREDENTIAL_INTEGRITY'));
      const tampered = Buffer.from(cred.credentialBlob);
      tampered[tampered.length - 1] = (tampered[tampered.length - 1] ?? 0) ^ 1;
      await assert.rejects(dev.activateCredential(ak, alg, tampered, cred.encryptedSecret), (e: unknown) => isTrustlaunchError(e, 'CREDENTIAL_INTEGRITY'));
    });
  }

  void it('refuses an attestation key the TPM does not hold at that handle', async () => {
    const ak = akOf('rsa2048');
    const impostor: AttestationKey = { ...ak, public: akOf('ecc-p384').public };
    await assert.rejects(dev.quote(impostor, [0], Buffer.alloc(32)), (e: unknown) => isTrustlaunchError(e, 'TPM_OBJECT_INVALID'));
    await assert.rejects(dev.quote({ ...ak, handle: 0x81010177 }, [0], Buffer.alloc(32)), (e: unknown) => isTrustlaunchError(e, 'TPM_OBJECT_INVALID'));
  });

  void it('PCR extends and quotes over the platform PCRs that the CA verifier accepts, with the measured values', async () => {
    const before = await dev.pcrRead([12]);
    const measurement = randomBytes(32);
    await dev.pcrExtend(12, measurement);
    const after = await dev.pcrRead(PLATFORM_PCRS);
    assert.deepEqual(Buffer.from(after.get(12) ?? []), sha256(before.get(12) ?? Buffer.alloc(32), measurement));
    const nonce = randomBytes(32);
    for (const alg of EKS) {
      const q = await dev.quote(akOf(alg), PLATFORM_PCRS, nonce);
      const v = verifyQuote(wireQuote(q, after), { akPublic: akOf(alg).public, qualifyingData: nonce });
      assert.deepEqual(v.extraData, nonce);
      assert.throws(() => verifyQuote(wireQuote(q, after), { akPublic: akOf(alg).public, qualifyingData: randomBytes(32) }), (e: unknown) => isTrustlaunchError(e, 'QUALIFYING_DATA_MISMATCH'));
    }
    await assert.rejects(dev.quote(akOf('rsa2048'), [0], Buffer.alloc(67)), (e: unknown) => isTrustlaunchError(e, 'TPM_PARSE_ERROR'));
  });

  void it('NV round trip with the software TPM’s error codes', async () => {
    const index = NV_INDEX.CA_CERTIFICATE;
    const data = randomBytes(1800);
    assert.equal(await dev.nvSize(index), undefined);
    await assert.rejects(dev.nvRead(index), (e: unknown) => isTrustlaunchError(e, 'NV_INDEX_UNDEFINED'));
    await assert.rejects(dev.nvWrite(index, data), (e: unknown) => isTrustlaunchError(e, 'NV_INDEX_UNDEFINED'));
    await assert.rejects(dev.nvDefine(index, { size: 4096 }), (e: unknown) => isTrustlaunchError(e, 'NV_SIZE_EXCEEDED'));
    await assert.rejects(dev.nvDefine(0x81000001, { size: 8 }), (e: unknown) => isTrustlaunchError(e, 'UNSUPPORTED'));
    await dev.nvDefine(index, { size: data.length, writeLockable: true });
    await assert.rejects(dev.nvDefine(index, { size: 8 }), (e: unknown) => isTrustlaunchError(e, 'NV_INDEX_EXISTS'));
    assert.equal(await dev.nvSize(index), data.length);
    await assert.rejects(dev.nvRead(index), (e: unknown) => isTrustlaunchError(e, 'NV_UNINITIALIZED'));
    await assert.rejects(dev.nvWrite(index, data, 1), (e: unknown) => isTrustlaunchError(e, 'NV_SIZE_EXCEEDED'));
    await dev.nvWrite(index, data);
    await dev.nvWrite(index, Buffer.from('tail'), data.length - 4);
    const expected = Buffer.concat([data.subarray(0, data.length - 4), Buffer.from('tail')]);
    assert.deepEqual(Buffer.from(await dev.nvRead(index)), expected);
    await dev.nvWriteLock(index);
    await assert.rejects(dev.nvWrite(index, Buffer.from('x')), (e: unknown) => isTrustlaunchError(e, 'NV_LOCKED'));
    const plain = NV_INDEX.REGISTRATION;
    await dev.nvDefine(plain, { size: 16 });
    await assert.rejects(dev.nvWriteLock(plain), (e: unknown) => isTrustlaunchError(e, 'NV_ATTRIBUTES'));
    await dev.nvUndefine(plain);
    await assert.rejects(dev.nvUndefine(plain), (e: unknown) => isTrustlaunchError(e, 'NV_INDEX_UNDEFINED'));
  });

  void it('serialises concurrent operations (three object slots never overflow)', async () => {
    const nonce = randomBytes(32);
    const results = await Promise.all([
      ...EKS.map((alg) => dev.quote(akOf(alg), PLATFORM_PCRS, nonce)),
      dev.endorsements(),
      ...EKS.map((alg) => dev.ensureAttestationKey(alg)),
      dev.nvRead(NV_INDEX.CA_CERTIFICATE),
      ...EKS.map(async (alg) => {
        const ek = (await dev.endorsements()).find((e) => e.algorithm === alg);
        assert.ok(ek !== undefined);
        const c = makeCredential(parseTpmtPublic(ek.public), akOf(alg).name, Buffer.alloc(16, 1));
        return dev.activateCredential(akOf(alg), alg, c.credentialBlob, c.encryptedSecret);
      }),
    ]);
    assert.equal(results.length, 8);
  });

  void it('a power cycle resets the PCRs; NV contents, the write lock’s end and the AKs are as a reboot leaves them', async () => {
    const oldPid = dev.process?.pid;
    const nvBefore = Buffer.from(await dev.nvRead(NV_INDEX.CA_CERTIFICATE));
    await dev.powerOff();
    assert.ok(oldPid !== undefined);
    assertProcessGone(oldPid);
    await assert.rejects(dev.pcrRead([0]), (e: unknown) => isTrustlaunchError(e, 'DEVICE_NOT_READY'));
    assert.match(dev.description, /stopped/);
    await dev.powerOn();
    for (const [, v] of await dev.pcrRead(PLATFORM_PCRS)) assert.deepEqual(Buffer.from(v), Buffer.alloc(32));
    assert.deepEqual(Buffer.from(await dev.nvRead(NV_INDEX.CA_CERTIFICATE)), nvBefore);
    // TPMA_NV_WRITE_STCLEAR: the lock ends with TPM2_Startup(CLEAR).
    await dev.nvWrite(NV_INDEX.CA_CERTIFICATE, Buffer.from('after reboot'));
    for (const alg of EKS) assert.deepEqual(await dev.ensureAttestationKey(alg), akOf(alg));
    // A quote after the restart shows reset PCRs: without re-measurement it cannot match the platform's reference values.
    const nonce = randomBytes(32);
    const q = await dev.quote(akOf('ecc-p384'), PLATFORM_PCRS, nonce);
    const pcrs = await dev.pcrRead(PLATFORM_PCRS);
    assert.deepEqual(verifyQuote(wireQuote(q, pcrs), { akPublic: akOf('ecc-p384').public, qualifyingData: nonce }).pcrs.get(12), Buffer.alloc(32));
  });

  void it('a swtpm killed under the device gives typed errors, and powerOn brings it back with its state', async () => {
    dev.process?.signal('SIGKILL');
    await dev.process?.exited;
    await assert.rejects(dev.pcrRead([0]), (e: unknown) => isTrustlaunchError(e, 'TPM_TRANSPORT_ERROR'));
    await dev.powerOn();
    assert.equal((await dev.nvRead(NV_INDEX.CA_CERTIFICATE)).length, 1800);
    assert.deepEqual(await dev.ensureAttestationKey('rsa2048'), akOf('rsa2048'));
  });

  void it('over TCP on 127.0.0.1 it works the same', async () => {
    const other = tempDir('tl-swtpm-dev-tcp-');
    const d = new SwtpmAuthDevice({ nodeDir: other.path, transport: 'tcp', akAlgorithm: 'rsa2048' });
    try {
      await d.powerOn();
      assert.match(d.description, /at tcp 127\.0\.0\.1:\d+$/);
      const ak = await d.ensureAttestationKey('ecc-p384');
      assert.equal(parseTpmtPublic(ak.public).type, 0x0001, 'an RSA AK, as asked');
      const nonce = randomBytes(32);
      const q = await d.quote(ak, [0, 12], nonce);
      verifyQuote(wireQuote(q, await d.pcrRead([0, 12])), { akPublic: ak.public, qualifyingData: nonce });
      await assertNoLoadedHandles(d.client);
    } finally {
      const pid = d.process?.pid;
      await d.powerOff();
      if (pid !== undefined) assertProcessGone(pid);
      other.dispose();
    }
  });

  void it('device specs: swtpm, tpm, tpm:/dev/…; a hardware device that is absent fails with a typed error', async () => {
    assert.ok(tpmDeviceFromSpec('swtpm', { nodeDir: work.path }) instanceof SwtpmAuthDevice);
    const hw = tpmDeviceFromSpec('tpm:/dev/tpmrm9', { nodeDir: work.path });
    assert.ok(hw instanceof HardwareTpmAuthDevice);
    assert.equal(hw.description, 'TPM 2.0 at /dev/tpmrm9');
    assert.throws(() => tpmDeviceFromSpec('tpm:relative', { nodeDir: work.path }), TypeError);
    assert.throws(() => tpmDeviceFromSpec('tpmx', { nodeDir: work.path }), TypeError);
    await assert.rejects(hw.powerOn(), (e: unknown) => isTrustlaunchError(e, 'TPM_TRANSPORT_ERROR'));
    await assert.rejects(hw.quote(akOf('rsa2048'), [0], Buffer.alloc(0)), (e: unknown) => isTrustlaunchError(e, 'DEVICE_NOT_READY'));
  });
});
