// Credential protection (TPM2_MakeCredential / TPM2_ActivateCredential). Oracles nobody here
// wrote: tpm2_makecredential -T none makes blobs for the software TPM's EKs (RSA-2048,
// ECC P-256, ECC P-384; EK given as TSS TPM2B_PUBLIC or PEM) that the software TPM activates;
// our makeCredential output is activated by tpm2_activatecredential on a real swtpm.
// Refusals: a blob for another AK name or another EK, or a tampered blob, fails integrity.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { isTrustlaunchError } from '../../src/protocol/errors.js';
import type { AttestationKey, EkAlgorithm } from '../../src/tpm/auth-device.js';
import { makeCredential } from '../../src/tpm/crypto/credential.js';
import { kdfa, kdfe } from '../../src/tpm/crypto/kdf.js';
import { TPM_ALG } from '../../src/tpm/constants.js';
import { parseTpm2bPublic, parseTpmtPublic } from '../../src/tpm/structures/public.js';
import { tempDir } from '../support/system.js';
import { credentialFile, parseCredentialFile, publicPem, startSwtpm, tpm2ok, tssPublicFile, type Swtpm } from '../support/tpm2-tools.js';
import { manufacturedSim, type SimFixture } from './sim-support.js';

const ALGORITHMS: readonly EkAlgorithm[] = ['rsa2048', 'ecc-p256', 'ecc-p384'];

void describe('credential protection with the software TPM', () => {
  let sim: SimFixture;
  let other: SimFixture;
  let work: { path: string; dispose: () => void };
  const ek = new Map<EkAlgorithm, Uint8Array>();
  const ak = new Map<EkAlgorithm, AttestationKey>();

  before(async () => {
    sim = await manufacturedSim({ algorithms: ALGORITHMS });
    other = await manufacturedSim({ algorithms: ['ecc-p256'] });
    work = tempDir('tl-cred-');
    for (const e of await sim.device.endorsements()) ek.set(e.algorithm, e.public);
    for (const a of ALGORITHMS) ak.set(a, await sim.device.ensureAttestationKey(a));
  });
  after(async () => {
    await sim.dispose();
    await other.dispose();
    work.dispose();
  });

  const get = <T>(m: Map<EkAlgorithm, T>, a: EkAlgorithm): T => {
    const v = m.get(a);
    assert.ok(v !== undefined);
    return v;
  };

  for (const alg of ALGORITHMS) {
    void it(`${alg}: activates what tpm2_makecredential -T none made for its EK (TSS TPM2B_PUBLIC)`, async () => {
      const secret = randomBytes(32);
      const akey = get(ak, alg);
      writeFileSync(join(work.path, 'ek.pub'), tssPublicFile(get(ek, alg)));
      writeFileSync(join(work.path, 'secret.bin'), secret);
      tpm2ok('tpm2_makecredential', ['-T', 'none', '-u', join(work.path, 'ek.pub'), '-s', join(work.path, 'secret.bin'), '-n', Buffer.from(akey.name).toString('hex'), '-o', join(work.path, 'cred.out')]);
      const { credentialBlob, encryptedSecret } = parseCredentialFile(readFileSync(join(work.path, 'cred.out')));
      assert.deepEqual(Buffer.from(await sim.device.activateCredential(akey, alg, credentialBlob, encryptedSecret)), secret);
    });

    void it(`${alg}: activates our own makeCredential output; refuses another AK name, another EK and tampering`, async () => {
      const akey = get(ak, alg);
      const ekPub = parseTpmtPublic(get(ek, alg));
      const secret = randomBytes(16);
      const c = makeCredential(ekPub, akey.name, secret);
      assert.deepEqual(Buffer.from(await sim.device.activateCredential(akey, alg, c.credentialBlob, c.encryptedSecret)), secret);

      const otherAk = get(ak, alg === 'rsa2048' ? 'ecc-p256' : 'rsa2048');
      const forOtherName = makeCredential(ekPub, otherAk.name, secret);
      await assert.rejects(sim.device.activateCredential(akey, alg, forOtherName.credentialBlob, forOtherName.encryptedSecret), (e) => isTrustlaunchError(e, 'CREDENTIAL_INTEGRITY'));

      const tampered = Buffer.from(c.credentialBlob);
      tampered.writeUInt8(tampered.readUInt8(tampered.length - 1) ^ 1, tampered.length - 1);
      await assert.rejects(sim.device.activateCredential(akey, alg, tampered, c.encryptedSecret), (e) => isTrustlaunchError(e, 'CREDENTIAL_INTEGRITY'));
    });
  }

  void it('ECC and RSA EKs given to tpm2_makecredential as PEM (-G ecc / -G rsa) work too', async () => {
    for (const alg of ['ecc-p256', 'rsa2048'] as const) {
      const secret = randomBytes(20);
      const akey = get(ak, alg);
      writeFileSync(join(work.path, 'ek.pem'), publicPem(get(ek, alg)));
      writeFileSync(join(work.path, 'secret.bin'), secret);
      tpm2ok('tpm2_makecredential', ['-T', 'none', '-G', alg === 'rsa2048' ? 'rsa' : 'ecc', '-u', join(work.path, 'ek.pem'), '-s', join(work.path, 'secret.bin'), '-n', Buffer.from(akey.name).toString('hex'), '-o', join(work.path, 'cred.out')]);
      const f = parseCredentialFile(readFileSync(join(work.path, 'cred.out')));
      assert.deepEqual(Buffer.from(await sim.device.activateCredential(akey, alg, f.credentialBlob, f.encryptedSecret)), secret, alg);
    }
  });

  void it('refuses a credential made for another TPM’s EK (the seed does not open, integrity fails)', async () => {
    const theirEk = (await other.device.endorsements())[0];
    assert.ok(theirEk !== undefined);
    const akey = get(ak, 'ecc-p256');
    const c = makeCredential(parseTpmtPublic(theirEk.public), akey.name, randomBytes(32));
    await assert.rejects(sim.device.activateCredential(akey, 'ecc-p256', c.credentialBlob, c.encryptedSecret), (e) => isTrustlaunchError(e, 'CREDENTIAL_INTEGRITY'));
    const rsa = makeCredential(parseTpmtPublic(get(ek, 'rsa2048')), akey.name, randomBytes(32));
    await assert.rejects(sim.device.activateCredential(akey, 'ecc-p256', rsa.credentialBlob, rsa.encryptedSecret), (e) => isTrustlaunchError(e, 'CREDENTIAL_INTEGRITY') || isTrustlaunchError(e, 'TPM_PARSE_ERROR'));
  });

  void it('random blobs and secrets are refused with a typed error, never another exception', async () => {
    const akey = get(ak, 'ecc-p256');
    const c = makeCredential(parseTpmtPublic(get(ek, 'ecc-p256')), akey.name, randomBytes(32));
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 200 }), fc.boolean(), async (junk, inBlob) => {
        const blob = inBlob ? junk : c.credentialBlob;
        const secret = inBlob ? c.encryptedSecret : junk;
        await assert.rejects(sim.device.activateCredential(akey, 'ecc-p256', blob, secret), (e) => isTrustlaunchError(e, 'CREDENTIAL_INTEGRITY') || isTrustlaunchError(e, 'TPM_PARSE_ERROR'));
      }),
      { numRuns: 100 },
    );
  });

  void it('a secret longer than the EK nameAlg digest cannot be protected (TPM_RC_SIZE)', () => {
    assert.throws(() => makeCredential(parseTpmtPublic(get(ek, 'ecc-p256')), get(ak, 'ecc-p256').name, Buffer.alloc(33)), RangeError);
    makeCredential(parseTpmtPublic(get(ek, 'ecc-p384')), get(ak, 'ecc-p384').name, Buffer.alloc(48));
  });
});

void describe('credential protection against a real TPM (swtpm)', () => {
  let tpm: Swtpm;
  before(async () => {
    tpm = await startSwtpm();
  });
  after(() => tpm.stop());

  for (const alg of ['rsa', 'ecc'] as const) {
    void it(`tpm2_activatecredential on swtpm recovers the secret from our makeCredential (${alg} EK)`, () => {
      const p = (f: string): string => join(tpm.dir, f);
      tpm.run('tpm2_createek', ['-c', p('ek.ctx'), '-G', alg, '-u', p('ek.pub')]);
      tpm.flush();
      tpm.run('tpm2_createak', ['-C', p('ek.ctx'), '-c', p('ak.ctx'), '-G', 'ecc', '-g', 'sha256', '-s', 'ecdsa', '-u', p('ak.pub'), '-n', p('ak.name'), '-r', p('ak.priv')]);
      tpm.flush();
      const secret = randomBytes(32);
      const c = makeCredential(parseTpm2bPublic(readFileSync(p('ek.pub'))), readFileSync(p('ak.name')), secret);
      writeFileSync(p('cred.out'), credentialFile(c.credentialBlob, c.encryptedSecret));
      tpm.run('tpm2_startauthsession', ['--policy-session', '-S', p('session.ctx')]);
      tpm.run('tpm2_policysecret', ['-S', p('session.ctx'), '-c', 'e']);
      tpm.run('tpm2_activatecredential', ['-c', p('ak.ctx'), '-C', p('ek.ctx'), '-i', p('cred.out'), '-o', p('recovered.bin'), '-P', `session:${p('session.ctx')}`]);
      tpm.run('tpm2_flushcontext', [p('session.ctx')]);
      tpm.flush();
      assert.deepEqual(readFileSync(p('recovered.bin')), secret);
    });
  }
});

void describe('KDFs (Part 1 §11.4.10)', () => {
  void it('KDFa and KDFe produce the requested bits, counter blocks and masked leading bits', () => {
    const k = kdfa(TPM_ALG.SHA256, Buffer.alloc(32, 1), 'STORAGE', Buffer.from('u'), Buffer.alloc(0), 128);
    assert.equal(k.length, 16);
    const long = kdfa(TPM_ALG.SHA256, Buffer.alloc(32, 1), 'STORAGE', Buffer.from('u'), Buffer.alloc(0), 520);
    assert.equal(long.length, 65);
    const odd = kdfa(TPM_ALG.SHA256, Buffer.alloc(32, 1), 'X', Buffer.alloc(0), Buffer.alloc(0), 12);
    assert.equal(odd.length, 2);
    assert.ok(odd.readUInt8(0) < 16, 'the 4 excess high bits are cleared');
    // the label's NUL is added once: "STORAGE" and "STORAGE\0" are the same label
    assert.deepEqual(kdfa(TPM_ALG.SHA256, Buffer.alloc(1), 'STORAGE\0', Buffer.alloc(0), Buffer.alloc(0), 256), kdfa(TPM_ALG.SHA256, Buffer.alloc(1), 'STORAGE', Buffer.alloc(0), Buffer.alloc(0), 256));
    assert.equal(kdfe(TPM_ALG.SHA384, Buffer.alloc(48, 2), 'IDENTITY', Buffer.alloc(48), Buffer.alloc(48), 384).length, 48);
  });
});
