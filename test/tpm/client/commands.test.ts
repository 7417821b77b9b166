// Every command of the client against a real, manufactured swtpm. After each test the TPM
// holds no transient object and no session (GetCapability TPM_CAP_HANDLES), so nothing
// leaks in a TPM with three object slots.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, afterEach, before, describe, it } from 'node:test';
import { toBase64url } from '../../../src/protocol/base64url.js';
import { TPM_ALG, TPM_ECC_CURVE, TPM_HT, TPM_RH } from '../../../src/tpm/constants.js';
import { makeCredential } from '../../../src/tpm/crypto/credential.js';
import { objectName } from '../../../src/tpm/crypto/name.js';
import { verifyQuote } from '../../../src/tpm/quote/verify.js';
import { objectAttributes } from '../../../src/tpm/structures/object-attributes.js';
import { pcrSelection } from '../../../src/tpm/structures/pcr-selection.js';
import type { TpmtPublicEcc } from '../../../src/tpm/structures/public.js';
import { AK_TEMPLATE_ECC_P256, AK_TEMPLATE_RSA2048, EK_HANDLE, EK_POLICY_A_SHA256, EK_TEMPLATE_RSA2048 } from '../../../src/tpm/templates.js';
import { EMPTY_AUTH, policyAuth } from '../../../src/tpm/client/authorization.js';
import { activateCredential, quote } from '../../../src/tpm/client/commands/attestation.js';
import { getHandles, getPcrBanks, getProperties, getRandom } from '../../../src/tpm/client/commands/capability.js';
import { nvDefineSpace, nvRead, nvReadPublic, nvUndefineSpace, nvWrite, nvWriteLock } from '../../../src/tpm/client/commands/nv.js';
import { create, createPrimary, evictControl, flushContext, load, readPublic } from '../../../src/tpm/client/commands/objects.js';
import { pcrExtend, pcrRead, pcrReadSha256 } from '../../../src/tpm/client/commands/pcr.js';
import { policyGetDigest, policySecret, startPolicySession } from '../../../src/tpm/client/commands/sessions.js';
import { startup } from '../../../src/tpm/client/commands/startup.js';
import { TPMA_NV, TPM_PT } from '../../../src/tpm/client/constants.js';
import { isTpmResponseError } from '../../../src/tpm/client/errors.js';
import { RC } from '../../../src/tpm/client/response-code.js';
import { flushAfter, withEndorsementKeyAuth, withPolicySecret, withTransient } from '../../../src/tpm/client/scoped.js';
import { assertNoLoadedHandles, startSwtpmFixture, type SwtpmFixture } from '../swtpm/support.js';

/** A storage primary (restricted decryption ECC P-256 with AES-128-CFB) in the owner hierarchy. */
const SRK_TEMPLATE: TpmtPublicEcc = {
  type: TPM_ALG.ECC,
  nameAlg: TPM_ALG.SHA256,
  objectAttributes: objectAttributes('fixedTPM', 'fixedParent', 'sensitiveDataOrigin', 'userWithAuth', 'noDA', 'restricted', 'decrypt'),
  authPolicy: Buffer.alloc(0),
  parameters: { symmetric: { algorithm: TPM_ALG.AES, keyBits: 128, mode: TPM_ALG.CFB }, scheme: { scheme: TPM_ALG.NULL }, curveID: TPM_ECC_CURVE.NIST_P256, kdf: { scheme: TPM_ALG.NULL } },
  unique: { x: Buffer.alloc(0), y: Buffer.alloc(0) },
};

const sha256 = (...parts: Uint8Array[]): Buffer => parts.reduce((h, p) => h.update(p), createHash('sha256')).digest();

void describe('TPM 2.0 commands against swtpm', () => {
  let f: SwtpmFixture;
  before(async () => {
    f = await startSwtpmFixture();
  });
  afterEach(async () => {
    await assertNoLoadedHandles(f.tpm);
  });
  after(async () => {
    await f.dispose();
  });

  void it('GetCapability: fixed properties, PCR banks, persistent handles and NV indices', async () => {
    const props = await getProperties(f.tpm, TPM_PT.FAMILY_INDICATOR, 64);
    assert.equal(props.get(TPM_PT.FAMILY_INDICATOR), 0x322e3000, 'family "2.0"');
    assert.equal(props.get(TPM_PT.NV_BUFFER_MAX), 1024);
    const banks = await getPcrBanks(f.tpm);
    const sha256Bank = banks.find((b) => b.hash === TPM_ALG.SHA256);
    assert.deepEqual(sha256Bank?.pcrs, Array.from({ length: 24 }, (_, i) => i));
    assert.deepEqual(await getHandles(f.tpm, TPM_HT.PERSISTENT), [0x81010001, 0x81010016]);
    assert.deepEqual(await getHandles(f.tpm, TPM_HT.NV_INDEX), [0x01c00002, 0x01c00016]);
  });

  void it('GetRandom: as many bytes as asked, over several TPM calls', async () => {
    for (const n of [0, 1, 32, 64, 65, 200]) assert.equal((await getRandom(f.tpm, n)).length, n);
    assert.notDeepEqual(await getRandom(f.tpm, 32), await getRandom(f.tpm, 32));
  });

  void it('Startup on a started TPM answers TPM_RC_INITIALIZE', async () => {
    await assert.rejects(startup(f.tpm), (e: unknown) => isTpmResponseError(e, RC.INITIALIZE));
  });

  void it('CreatePrimary re-creates the certified RSA EK (same Name as the persistent one); FlushContext frees it', async () => {
    const persistent = await readPublic(f.tpm, EK_HANDLE.rsa2048);
    const ek = await createPrimary(f.tpm, { hierarchy: TPM_RH.ENDORSEMENT, template: EK_TEMPLATE_RSA2048 });
    assert.equal(ek.handle >>> 24, TPM_HT.TRANSIENT);
    assert.deepEqual(ek.name, persistent.name);
    assert.deepEqual(await getHandles(f.tpm, TPM_HT.TRANSIENT), [ek.handle]);
    await flushContext(f.tpm, ek.handle);
    // A flushed transient handle references no loaded object: a warning, TPM_RC_REFERENCE_H0.
    await assert.rejects(readPublic(f.tpm, ek.handle), (e: unknown) => isTpmResponseError(e, RC.REFERENCE_H0));
  });

  void it('Create and Load under a storage primary; ReadPublic returns the same public area and Name', async () => {
    await withTransient(
      f.tpm,
      () => createPrimary(f.tpm, { hierarchy: TPM_RH.OWNER, template: SRK_TEMPLATE }),
      async (srk) => {
        for (const template of [AK_TEMPLATE_ECC_P256, AK_TEMPLATE_RSA2048]) {
          const created = await create(f.tpm, { parent: srk.handle, template });
          assert.equal(created.public.type, template.type);
          await withTransient(
            f.tpm,
            () => load(f.tpm, { parent: srk.handle, private: created.private, publicBytes: created.publicBytes }),
            async (key) => {
              assert.deepEqual(key.name, objectName(created.publicBytes));
              const read = await readPublic(f.tpm, key.handle);
              assert.deepEqual(read.publicBytes, created.publicBytes);
              assert.deepEqual(read.name, key.name);
            },
          );
        }
      },
    );
  });

  void it('EvictControl persists a key and removes it again', async () => {
    const handle = 0x81000123;
    const key = await createPrimary(f.tpm, { hierarchy: TPM_RH.OWNER, template: SRK_TEMPLATE });
    await flushAfter(f.tpm, key.handle, () => evictControl(f.tpm, { object: key.handle, persistentHandle: handle }));
    assert.deepEqual((await readPublic(f.tpm, handle)).name, key.name);
    await evictControl(f.tpm, { object: handle, persistentHandle: handle });
    await assert.rejects(readPublic(f.tpm, handle), (e: unknown) => isTpmResponseError(e, RC.HANDLE));
  });

  void it('PCR_Extend is SHA-256(old ‖ digest); PCR_Read reads all 24 PCRs across several calls', async () => {
    const before = (await pcrReadSha256(f.tpm, [16])).get(16);
    assert.ok(before !== undefined);
    const digest = randomBytes(32);
    await pcrExtend(f.tpm, 16, [{ hashAlg: TPM_ALG.SHA256, digest }]);
    assert.deepEqual((await pcrReadSha256(f.tpm, [16])).get(16), sha256(before, digest));
    const all = await pcrRead(f.tpm, [pcrSelection(TPM_ALG.SHA256, Array.from({ length: 24 }, (_, i) => i))]);
    assert.equal(all.values.get(TPM_ALG.SHA256)?.size, 24);
  });

  void it('a policy session with PolicySecret(TPM_RH_ENDORSEMENT) has the EK profile policy digest (SHA-256 and SHA-384)', async () => {
    for (const [hashAlg, node, size] of [
      [TPM_ALG.SHA256, 'sha256', 32],
      [TPM_ALG.SHA384, 'sha384', 48],
    ] as const) {
      const session = await startPolicySession(f.tpm, hashAlg);
      await flushAfter(f.tpm, session.handle, async () => {
        await policySecret(f.tpm, { authHandle: TPM_RH.ENDORSEMENT, auth: EMPTY_AUTH, session });
        // PolicySecret: H(H(0…0 ‖ TPM_CC_PolicySecret ‖ Name(TPM_RH_ENDORSEMENT)) ‖ policyRef) (Part 3 §23.4)
        const step = createHash(node).update(Buffer.alloc(size)).update(Buffer.from('000001514000000b', 'hex')).digest();
        const expected = createHash(node).update(step).digest();
        assert.deepEqual(await policyGetDigest(f.tpm, session), expected);
        if (hashAlg === TPM_ALG.SHA256) assert.deepEqual(expected, EK_POLICY_A_SHA256);
      });
    }
  });

  void it('Quote over PCRs verifies with the verifier the CA uses', async () => {
    const ekPublic = (await readPublic(f.tpm, EK_HANDLE.rsa2048)).public;
    const created = await withEndorsementKeyAuth(f.tpm, ekPublic, (auth) => create(f.tpm, { parent: EK_HANDLE.rsa2048, parentAuth: auth, template: AK_TEMPLATE_ECC_P256 }));
    const nonce = randomBytes(32);
    const pcrs = [0, 4, 5, 12];
    const q = await withTransient(
      f.tpm,
      () => withEndorsementKeyAuth(f.tpm, ekPublic, (auth) => load(f.tpm, { parent: EK_HANDLE.rsa2048, parentAuth: auth, private: created.private, publicBytes: created.publicBytes })),
      (ak) => quote(f.tpm, { signHandle: ak.handle, qualifyingData: nonce, pcrs: [pcrSelection(TPM_ALG.SHA256, pcrs)] }),
    );
    const values = await pcrReadSha256(f.tpm, pcrs);
    const verified = verifyQuote(
      { attest: toBase64url(q.attest), signature: toBase64url(q.signature), pcrs: { sha256: Object.fromEntries([...values].map(([i, v]) => [String(i), v.toString('hex')])) } },
      { akPublic: created.publicBytes, qualifyingData: nonce },
    );
    assert.deepEqual(verified.extraData, nonce);
  });

  for (const ekAlg of ['rsa2048', 'ecc-p384'] as const) {
    void it(`ActivateCredential with the ${ekAlg} EK recovers the secret; a blob for another Name fails integrity`, async () => {
      const ekHandle = EK_HANDLE[ekAlg];
      const ek = await readPublic(f.tpm, ekHandle);
      await withTransient(
        f.tpm,
        () => createPrimary(f.tpm, { hierarchy: TPM_RH.OWNER, template: SRK_TEMPLATE }),
        async (srk) => {
          const created = await create(f.tpm, { parent: srk.handle, template: AK_TEMPLATE_ECC_P256 });
          await withTransient(
            f.tpm,
            () => load(f.tpm, { parent: srk.handle, private: created.private, publicBytes: created.publicBytes }),
            async (ak) => {
              const secret = randomBytes(32);
              const good = makeCredential(ek.public, ak.name, secret);
              const recovered = await withEndorsementKeyAuth(f.tpm, ek.public, (keyAuth) =>
                activateCredential(f.tpm, { activateHandle: ak.handle, keyHandle: ekHandle, keyAuth, credentialBlob: good.credentialBlob, secret: good.encryptedSecret }),
              );
              assert.deepEqual(recovered, secret);
              const other = makeCredential(ek.public, Buffer.concat([ak.name.subarray(0, 2), randomBytes(32)]), secret);
              await assert.rejects(
                withEndorsementKeyAuth(f.tpm, ek.public, (keyAuth) =>
                  activateCredential(f.tpm, { activateHandle: ak.handle, keyHandle: ekHandle, keyAuth, credentialBlob: other.credentialBlob, secret: other.encryptedSecret }),
                ),
                (e: unknown) => isTpmResponseError(e, RC.INTEGRITY),
              );
            },
          );
        },
      );
    });
  }

  void it('the RSA EK refuses its empty password: it needs the PolicySecret session', async () => {
    const ek = await readPublic(f.tpm, EK_HANDLE.rsa2048);
    await assert.rejects(create(f.tpm, { parent: EK_HANDLE.rsa2048, parentAuth: EMPTY_AUTH, template: AK_TEMPLATE_ECC_P256 }), (e: unknown) => isTpmResponseError(e, RC.AUTH_UNAVAILABLE));
    const created = await withPolicySecret(f.tpm, ek.public.nameAlg, (auth) => create(f.tpm, { parent: EK_HANDLE.rsa2048, parentAuth: auth, template: AK_TEMPLATE_ECC_P256 }));
    assert.equal(created.public.type, TPM_ALG.ECC);
    // A policy session whose digest does not match (nothing asserted) is refused too.
    const empty = await startPolicySession(f.tpm, TPM_ALG.SHA256);
    await flushAfter(f.tpm, empty.handle, () =>
      assert.rejects(create(f.tpm, { parent: EK_HANDLE.rsa2048, parentAuth: policyAuth(empty), template: AK_TEMPLATE_ECC_P256 }), (e: unknown) => isTpmResponseError(e, RC.POLICY_FAIL)),
    );
  });

  void it('NV: define, write and read across chunks, read the public area, write-lock, undefine', async () => {
    const index = 0x01500020;
    const attributes = (TPMA_NV.OWNERWRITE | TPMA_NV.OWNERREAD | TPMA_NV.AUTHWRITE | TPMA_NV.AUTHREAD | TPMA_NV.NO_DA | TPMA_NV.WRITE_STCLEAR) >>> 0;
    await nvDefineSpace(f.tpm, { public: { nvIndex: index, nameAlg: TPM_ALG.SHA256, attributes, authPolicy: Buffer.alloc(0), dataSize: 2048 } });
    try {
      const before = await nvReadPublic(f.tpm, index);
      assert.equal(before.public.attributes & TPMA_NV.WRITTEN, 0);
      await assert.rejects(nvRead(f.tpm, { index, size: 8 }), (e: unknown) => isTpmResponseError(e, RC.NV_UNINITIALIZED));
      const data = randomBytes(2048);
      await nvWrite(f.tpm, { index, data });
      assert.deepEqual(await nvRead(f.tpm, { index, size: 2048 }), data);
      assert.deepEqual(await nvRead(f.tpm, { index, authHandle: index, size: 100, offset: 1500, chunkSize: 64 }), data.subarray(1500, 1600));
      const after = await nvReadPublic(f.tpm, index);
      assert.notEqual(after.public.attributes & TPMA_NV.WRITTEN, 0);
      await assert.rejects(nvWrite(f.tpm, { index, data: Buffer.alloc(2), offset: 2047 }), (e: unknown) => isTpmResponseError(e, RC.NV_RANGE));
      await nvWriteLock(f.tpm, { index });
      await assert.rejects(nvWrite(f.tpm, { index, data: Buffer.alloc(1) }), (e: unknown) => isTpmResponseError(e, RC.NV_LOCKED));
    } finally {
      await nvUndefineSpace(f.tpm, { index });
    }
    await assert.rejects(nvReadPublic(f.tpm, index), (e: unknown) => isTpmResponseError(e, RC.HANDLE));
  });

  void it('reads the EK certificates from their NV indices (DER, as manufactured)', async () => {
    for (const index of [0x01c00002, 0x01c00016]) {
      const nv = await nvReadPublic(f.tpm, index);
      const der = await nvRead(f.tpm, { index, size: nv.public.dataSize });
      assert.equal(der[0], 0x30);
      assert.equal(der.readUInt16BE(2) + 4, der.length);
    }
  });
});
