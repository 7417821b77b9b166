// tpm2-tools as an oracle for the client, on one swtpm: tpm2_checkquote accepts our
// client's quotes; our verifier accepts tpm2_quote's; a blob from our makeCredential is
// activated by tpm2_activatecredential, and one from tpm2_makecredential by our client;
// NV written by one side is read by the other. RSA-2048 and ECC P-384 EKs, ECC and RSA AKs.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { toBase64url } from '../../../src/protocol/base64url.js';
import { TPM_ALG, TPM_RH } from '../../../src/tpm/constants.js';
import { makeCredential } from '../../../src/tpm/crypto/credential.js';
import { verifyQuote } from '../../../src/tpm/quote/verify.js';
import { pcrSelection } from '../../../src/tpm/structures/pcr-selection.js';
import { parseTpm2bPublic, marshalTpmtPublic } from '../../../src/tpm/structures/public.js';
import { AK_TEMPLATE_ECC_P256, AK_TEMPLATE_RSA2048, EK_HANDLE, type AkAlgorithm } from '../../../src/tpm/templates.js';
import type { EkAlgorithm } from '../../../src/tpm/auth-device.js';
import { activateCredential, quote } from '../../../src/tpm/client/commands/attestation.js';
import { nvDefineSpace, nvRead, nvReadPublic, nvUndefineSpace, nvWrite } from '../../../src/tpm/client/commands/nv.js';
import { create, evictControl, load, readPublic } from '../../../src/tpm/client/commands/objects.js';
import { pcrExtend, pcrReadSha256 } from '../../../src/tpm/client/commands/pcr.js';
import { TPMA_NV } from '../../../src/tpm/client/constants.js';
import { isTpmResponseError } from '../../../src/tpm/client/errors.js';
import { RC } from '../../../src/tpm/client/response-code.js';
import { withEndorsementKeyAuth, withTransient } from '../../../src/tpm/client/scoped.js';
import { checkQuote, credentialFile, parseCredentialFile, parseTssPcrsFile, tpm2, tpm2ok, tssPublicFile, writeQuoteFiles } from '../../support/tpm2-tools.js';
import { tempDir } from '../../support/system.js';
import { assertNoLoadedHandles, startSwtpmFixture, type SwtpmFixture } from '../swtpm/support.js';

const PCRS = [0, 4, 5, 12];
const AK_TEMPLATES = { 'ecc-p256': AK_TEMPLATE_ECC_P256, rsa2048: AK_TEMPLATE_RSA2048 } as const;

void describe('the TPM client cross-checked with tpm2-tools on one swtpm', () => {
  let f: SwtpmFixture;
  let work: { path: string; dispose: () => void };
  const aks = new Map<AkAlgorithm, { handle: number; publicBytes: Buffer; name: Buffer }>();
  const akOf = (alg: AkAlgorithm): { handle: number; publicBytes: Buffer; name: Buffer } => {
    const ak = aks.get(alg);
    assert.ok(ak !== undefined);
    return ak;
  };
  const file = (name: string): string => join(work.path, name);

  /** Runs a tool against the swtpm: our connection steps aside first, and the tool's leftovers are flushed after. */
  const tool = async (name: string, args: readonly string[]): Promise<string> => {
    await f.transport.disconnect();
    try {
      return tpm2ok(name, args, f.env());
    } finally {
      for (const t of ['-t', '-l', '-s']) tpm2ok('tpm2_flushcontext', [t], f.env());
    }
  };

  before(async () => {
    f = await startSwtpmFixture();
    work = tempDir('tl-oracle-');
    // Something other than zeros in the quoted PCRs.
    for (const pcr of PCRS) await pcrExtend(f.tpm, pcr, [{ hashAlg: TPM_ALG.SHA256, digest: randomBytes(32) }]);
    aks.set('ecc-p256', await ourPersistentAk('ecc-p256', 0x81010201));
    aks.set('rsa2048', await ourPersistentAk('rsa2048', 0x81010202));
  });
  afterEach(async () => {
    await assertNoLoadedHandles(f.tpm);
  });
  after(async () => {
    await f.dispose();
    work.dispose();
  });

  /** An AK made by our client under the RSA EK and persisted at `handle`. */
  async function ourPersistentAk(alg: AkAlgorithm, handle: number): Promise<{ handle: number; publicBytes: Buffer; name: Buffer }> {
    const ek = await readPublic(f.tpm, EK_HANDLE.rsa2048);
    const created = await withEndorsementKeyAuth(f.tpm, ek.public, (auth) => create(f.tpm, { parent: EK_HANDLE.rsa2048, parentAuth: auth, template: AK_TEMPLATES[alg] }));
    const loaded = await withTransient(
      f.tpm,
      () => withEndorsementKeyAuth(f.tpm, ek.public, (auth) => load(f.tpm, { parent: EK_HANDLE.rsa2048, parentAuth: auth, private: created.private, publicBytes: created.publicBytes })),
      async (ak) => {
        await evictControl(f.tpm, { object: ak.handle, persistentHandle: handle });
        return ak;
      },
    );
    return { handle, publicBytes: loaded.publicBytes, name: loaded.name };
  }

  for (const alg of ['ecc-p256', 'rsa2048'] as const) {
    void it(`tpm2_checkquote accepts our client's quote (${alg} AK), and refuses it for another nonce`, async () => {
      const ak = akOf(alg);
      const nonce = randomBytes(32);
      const q = await quote(f.tpm, { signHandle: ak.handle, qualifyingData: nonce, pcrs: [pcrSelection(TPM_ALG.SHA256, PCRS)] });
      const files = writeQuoteFiles(work.path, { akPublic: ak.publicBytes, attest: q.attest, signature: q.signature, pcrs: await pcrReadSha256(f.tpm, PCRS) });
      const accepted = checkQuote(files, nonce.toString('hex'));
      assert.equal(accepted.status, 0, accepted.stderr);
      assert.notEqual(checkQuote(files, randomBytes(32).toString('hex')).status, 0);
    });
  }

  void it("our verifier accepts tpm2_quote's quote of a tpm2-tools AK; a changed PCR value is refused", async () => {
    await tool('tpm2_createek', ['-c', file('ek.ctx'), '-G', 'rsa', '-u', file('ek.pub')]);
    await tool('tpm2_createak', ['-C', file('ek.ctx'), '-c', file('ak.ctx'), '-G', 'ecc', '-g', 'sha256', '-s', 'ecdsa', '-u', file('ak.pub'), '-n', file('ak.name'), '-r', file('ak.priv')]);
    await tool('tpm2_evictcontrol', ['-C', 'o', '-c', file('ak.ctx'), '0x81010203']);
    const nonce = randomBytes(32);
    await tool('tpm2_quote', ['-c', '0x81010203', '-l', `sha256:${PCRS.join(',')}`, '-q', nonce.toString('hex'), '-m', file('q.msg'), '-s', file('q.sig'), '-o', file('q.pcrs'), '-g', 'sha256']);
    const akPublic = marshalTpmtPublic(parseTpm2bPublic(readFileSync(file('ak.pub'))));
    const pcrs = parseTssPcrsFile(readFileSync(file('q.pcrs')));
    assert.deepEqual(pcrs, await pcrReadSha256(f.tpm, PCRS));
    const wire = (values: ReadonlyMap<number, Uint8Array>) => ({
      attest: toBase64url(readFileSync(file('q.msg'))),
      signature: toBase64url(readFileSync(file('q.sig'))),
      pcrs: { sha256: Object.fromEntries([...values].map(([i, v]) => [String(i), Buffer.from(v).toString('hex')])) },
    });
    const verified = verifyQuote(wire(pcrs), { akPublic, qualifyingData: nonce });
    assert.deepEqual(verified.extraData, nonce);
    const changed = new Map(pcrs);
    changed.set(12, randomBytes(32));
    assert.throws(() => verifyQuote(wire(changed), { akPublic, qualifyingData: nonce }), (e: unknown) => (e as { code?: string }).code === 'PCR_DIGEST_MISMATCH');
    // The AK name tpm2-tools reports is the one our client computes.
    assert.deepEqual((await readPublic(f.tpm, 0x81010203)).name, readFileSync(file('ak.name')));
  });

  for (const ekAlg of ['rsa2048', 'ecc-p384'] as const satisfies readonly EkAlgorithm[]) {
    void it(`tpm2_activatecredential opens a blob from our makeCredential (${ekAlg} EK)`, async () => {
      const ek = await readPublic(f.tpm, EK_HANDLE[ekAlg]);
      const ak = akOf('ecc-p256');
      const secret = randomBytes(32);
      const cred = makeCredential(ek.public, ak.name, secret);
      writeFileSync(file('cred.in'), credentialFile(cred.credentialBlob, cred.encryptedSecret));
      const ekHandle = `0x${EK_HANDLE[ekAlg].toString(16)}`;
      if (ekAlg === 'rsa2048') {
        // The RSA EK's policy: PolicySecret(TPM_RH_ENDORSEMENT) in a policy session.
        await f.transport.disconnect();
        const env = f.env();
        tpm2ok('tpm2_startauthsession', ['--policy-session', '-S', file('sess.ctx')], env);
        try {
          tpm2ok('tpm2_policysecret', ['-S', file('sess.ctx'), '-c', 'e'], env);
          tpm2ok('tpm2_activatecredential', ['-c', '0x81010201', '-C', ekHandle, '-i', file('cred.in'), '-o', file('cred.out'), '-P', `session:${file('sess.ctx')}`], env);
        } finally {
          tpm2('tpm2_flushcontext', [file('sess.ctx')], env);
        }
      } else {
        await tool('tpm2_activatecredential', ['-c', '0x81010201', '-C', ekHandle, '-i', file('cred.in'), '-o', file('cred.out')]);
      }
      assert.deepEqual(readFileSync(file('cred.out')), secret);
    });

    void it(`our client activates a blob from tpm2_makecredential (${ekAlg} EK); a blob for another AK fails`, async () => {
      const ek = await readPublic(f.tpm, EK_HANDLE[ekAlg]);
      const ak = akOf('ecc-p256');
      const secret = randomBytes(32);
      writeFileSync(file('ek.tss'), tssPublicFile(ek.publicBytes));
      writeFileSync(file('secret.bin'), secret);
      const make = (name: Buffer): { credentialBlob: Uint8Array; encryptedSecret: Uint8Array } => {
        tpm2ok('tpm2_makecredential', ['-T', 'none', '-u', file('ek.tss'), '-s', file('secret.bin'), '-n', name.toString('hex'), '-o', file('cred.tools')]);
        return parseCredentialFile(readFileSync(file('cred.tools')));
      };
      const activate = (c: { credentialBlob: Uint8Array; encryptedSecret: Uint8Array }): Promise<Buffer> =>
        withEndorsementKeyAuth(f.tpm, ek.public, (keyAuth) =>
          activateCredential(f.tpm, { activateHandle: 0x81010201, keyHandle: EK_HANDLE[ekAlg], keyAuth, credentialBlob: c.credentialBlob, secret: c.encryptedSecret }),
        );
      assert.deepEqual(await activate(make(ak.name)), secret);
      const other = akOf('rsa2048').name;
      await assert.rejects(activate(make(other)), (e: unknown) => isTpmResponseError(e, RC.INTEGRITY));
    });
  }

  void it('NV written by our client is read by tpm2_nvread, and the reverse', async () => {
    const ours = 0x01500040;
    const data = randomBytes(1500);
    const attributes = (TPMA_NV.OWNERWRITE | TPMA_NV.OWNERREAD | TPMA_NV.NO_DA) >>> 0;
    await nvDefineSpace(f.tpm, { public: { nvIndex: ours, nameAlg: TPM_ALG.SHA256, attributes, authPolicy: Buffer.alloc(0), dataSize: data.length } });
    try {
      await nvWrite(f.tpm, { index: ours, data });
      await tool('tpm2_nvread', ['0x01500040', '-C', 'o', '-s', String(data.length), '-o', file('nv.out')]);
      assert.deepEqual(readFileSync(file('nv.out')), data);
    } finally {
      await nvUndefineSpace(f.tpm, { index: ours });
    }
    const theirs = randomBytes(700);
    writeFileSync(file('nv.in'), theirs);
    await tool('tpm2_nvdefine', ['0x01500041', '-C', 'o', '-s', String(theirs.length), '-a', 'ownerread|ownerwrite|authread|authwrite']);
    await tool('tpm2_nvwrite', ['0x01500041', '-C', 'o', '-i', file('nv.in')]);
    const pub = await nvReadPublic(f.tpm, 0x01500041);
    assert.equal(pub.public.dataSize, theirs.length);
    assert.deepEqual(await nvRead(f.tpm, { index: 0x01500041, authHandle: TPM_RH.OWNER, size: theirs.length }), theirs);
    await nvUndefineSpace(f.tpm, { index: 0x01500041 });
  });
});
