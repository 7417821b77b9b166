// Quote verification: the software TPM's quotes pass our verifier AND tools nobody here
// wrote (tpm2_checkquote accepts them and rejects a changed PCR or nonce; tpm2_print parses
// the attest bytes to the same fields). Negative cases are annotated byte changes, each
// asserting its pipeline step and code; a TPM2_Sign forgery and a TPM2_Certify structure
// signed by the same AK fail the TPM_GENERATED_VALUE / type step.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { toBase64url } from '../../src/protocol/base64url.js';
import { canonicalize } from '../../src/protocol/canonical-json.js';
import { sha256 } from '../../src/protocol/digest.js';
import { isTrustlaunchError, TrustlaunchError, type ErrorCode } from '../../src/protocol/errors.js';
import type { TpmQuote } from '../../src/protocol/messages.js';
import { PCR, PLATFORM_PCRS } from '../../src/protocol/pcrs.js';
import type { AttestationKey } from '../../src/tpm/auth-device.js';
import { TPM_ALG, TPM_RH } from '../../src/tpm/constants.js';
import { handleName, qualifiedName } from '../../src/tpm/crypto/name.js';
import { signTpmt } from '../../src/tpm/crypto/signature.js';
import { marshalTpmtSignature } from '../../src/tpm/structures/signature.js';
import { verifyQuote, type QuoteStep } from '../../src/tpm/quote/verify.js';
import { parseTpmsAttest } from '../../src/tpm/structures/attest.js';
import { AK_TEMPLATE_RSA2048, EK_HANDLE } from '../../src/tpm/templates.js';
import { tempDir } from '../support/system.js';
import { checkQuote, tpm2ok, writeQuoteFiles } from '../support/tpm2-tools.js';
import { manufacturedSim, type SimFixture } from './sim-support.js';

interface Quoted {
  readonly ak: AttestationKey;
  readonly wire: TpmQuote;
  readonly attest: Buffer;
  readonly signature: Buffer;
  readonly pcrs: Map<number, Buffer>;
  readonly nonce: Buffer;
}

function wireOf(attest: Uint8Array, signature: Uint8Array, pcrs: ReadonlyMap<number, Uint8Array>): TpmQuote {
  return {
    attest: toBase64url(attest),
    signature: toBase64url(signature),
    pcrs: { sha256: Object.fromEntries([...pcrs].map(([i, v]) => [String(i), Buffer.from(v).toString('hex')])) },
  };
}

function rejectsWith(code: ErrorCode, step: QuoteStep, fn: () => unknown): void {
  assert.throws(fn, (e) => {
    assert.ok(e instanceof TrustlaunchError, `expected a TrustlaunchError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    assert.equal(e.detail?.['step'], step, e.message);
    return true;
  });
}

void describe('quote verification', () => {
  let sim: SimFixture;
  let ecc: Quoted;
  let rsa: Quoted;
  let work: { path: string; dispose: () => void };

  async function quote(ak: AttestationKey): Promise<Quoted> {
    const claims = { nodeId: 'node-1', vmId: `vm-${ak.handle.toString(16)}`, time: 1_700_000_000 };
    const nonce = sha256(canonicalize(claims));
    const r = await sim.device.quote(ak, PLATFORM_PCRS, nonce);
    const pcrs = new Map([...(await sim.device.pcrRead(PLATFORM_PCRS))].map(([i, v]) => [i, Buffer.from(v)]));
    return { ak, wire: wireOf(r.attest, r.signature, pcrs), attest: Buffer.from(r.attest), signature: Buffer.from(r.signature), pcrs, nonce };
  }

  before(async () => {
    sim = await manufacturedSim({ algorithms: ['ecc-p256'] });
    work = tempDir('tl-quote-');
    await sim.device.pcrExtend(PCR.PLATFORM_FIRMWARE, sha256('firmware'));
    await sim.device.pcrExtend(PCR.HYPERVISOR, sha256('hypervisor'));
    await sim.device.pcrExtend(PCR.BOOT_CONFIG, sha256('boot config'));
    await sim.device.pcrExtend(PCR.MINIDOMAIN, sha256('mini-domain'));
    ecc = await quote(await sim.device.ensureAttestationKey('ecc-p256'));
    const rsaAk = await sim.device.engine.createPersistent(EK_HANDLE['ecc-p256'], AK_TEMPLATE_RSA2048, 0x81010180);
    rsa = await quote({ handle: rsaAk.handle, public: rsaAk.publicBytes, name: rsaAk.name });
  });
  after(async () => {
    await sim.dispose();
    work.dispose();
  });

  void it('accepts ECDSA and RSASSA quotes and returns only verified values', () => {
    for (const q of [ecc, rsa]) {
      const v = verifyQuote(q.wire, { akPublic: q.ak.public, qualifyingData: q.nonce });
      assert.deepEqual(v.extraData, q.nonce);
      assert.deepEqual([...v.pcrs.keys()].sort((a, b) => a - b), [...PLATFORM_PCRS].sort((a, b) => a - b));
      for (const [i, value] of q.pcrs) assert.deepEqual(v.pcrs.get(i), value);
      const ekName = sim.device.engine.object(EK_HANDLE['ecc-p256']).name;
      const qn = qualifiedName(qualifiedName(handleName(TPM_RH.ENDORSEMENT), ekName, TPM_ALG.SHA256), q.ak.name, TPM_ALG.SHA256);
      assert.deepEqual(v.qualifiedSigner, qn, "qualifiedSigner is the AK's qualified name under the EK");
    }
  });

  void it('tpm2_checkquote accepts the software TPM’s quotes and rejects a changed PCR or nonce', () => {
    for (const q of [ecc, rsa]) {
      const files = writeQuoteFiles(work.path, { akPublic: q.ak.public, attest: q.attest, signature: q.signature, pcrs: q.pcrs });
      const ok = checkQuote(files, q.nonce.toString('hex'));
      assert.equal(ok.status, 0, ok.stderr);
      const changed = new Map(q.pcrs);
      changed.set(PCR.MINIDOMAIN, sha256('another mini-domain'));
      const badPcr = checkQuote(writeQuoteFiles(work.path, { akPublic: q.ak.public, attest: q.attest, signature: q.signature, pcrs: changed }), q.nonce.toString('hex'));
      assert.notEqual(badPcr.status, 0, 'tpm2_checkquote must reject a changed PCR value');
      const restored = writeQuoteFiles(work.path, { akPublic: q.ak.public, attest: q.attest, signature: q.signature, pcrs: q.pcrs });
      const badNonce = checkQuote(restored, sha256('other claims').toString('hex'));
      assert.notEqual(badNonce.status, 0, 'tpm2_checkquote must reject another nonce');
    }
  });

  void it('tpm2_print -t TPMS_ATTEST reads our attest bytes to the same fields', () => {
    const files = writeQuoteFiles(work.path, { akPublic: ecc.ak.public, attest: ecc.attest, signature: ecc.signature, pcrs: ecc.pcrs });
    const yaml = tpm2ok('tpm2_print', ['-t', 'TPMS_ATTEST', files.message]);
    const a = parseTpmsAttest(ecc.attest);
    assert.ok(a.attested.kind === 'quote');
    const field = (name: string): string => (new RegExp(`^\\s*${name}: (\\S+)$`, 'm').exec(yaml)?.[1] ?? '').toLowerCase();
    assert.equal(field('magic'), 'ff544347');
    assert.equal(field('type'), '8018');
    assert.equal(field('qualifiedSigner'), Buffer.from(a.qualifiedSigner).toString('hex'));
    assert.equal(field('extraData'), ecc.nonce.toString('hex'));
    assert.equal(field('clock'), a.clockInfo.clock.toString());
    assert.equal(field('resetCount'), String(a.clockInfo.resetCount));
    // tpm2_print 5.4 prints the UINT64 as the hex of its little-endian memory bytes (the swtpm
    // fixture shows the same: 0x2019102300163636 printed as 3636160023101920).
    const le = Buffer.alloc(8);
    le.writeBigUInt64LE(a.firmwareVersion);
    assert.equal(field('firmwareVersion'), le.toString('hex'), '64-bit firmwareVersion agrees');
    assert.equal(field('pcrSelect'), '311000', 'PCRs 0, 4, 5 (octet 0: 0x31) and 12 (octet 1: 0x10)');
    assert.equal(field('pcrDigest'), Buffer.from(a.attested.pcrDigest).toString('hex'));
  });

  // --- annotated negative cases -------------------------------------------------------

  /** Offsets in our TPMS_ATTEST: magic 0, type 4, qualifiedSigner size 6 + 34 bytes, extraData size 42 + 32 bytes. */
  const EXTRA_DATA_AT = 44;
  /** In an ECDSA TPMT_SIGNATURE: sigAlg 0, hash 2, R size 4 + 32 bytes, S size 38 + 32 bytes. */
  const SIG = { sigAlg: 0, hash: 2, sLast: 71 };

  function withBytes(b: Buffer, changes: readonly [offset: number, value: number][]): Buffer {
    const c = Buffer.from(b);
    for (const [at, v] of changes) c[at] = v;
    return c;
  }

  void it('rejects each annotated byte change at its own step with its own code', () => {
    const exp = { akPublic: ecc.ak.public, qualifyingData: ecc.nonce };
    const cases: [string, () => unknown, ErrorCode, QuoteStep][] = [
      ['extraData[0] flipped in the signed bytes', () => verifyQuote(wireOf(withBytes(ecc.attest, [[EXTRA_DATA_AT, (ecc.attest[EXTRA_DATA_AT] ?? 0) ^ 1]]), ecc.signature, ecc.pcrs), exp), 'QUOTE_SIGNATURE_INVALID', 'verifySignature'],
      ['last octet of ECDSA s flipped', () => verifyQuote(wireOf(ecc.attest, withBytes(ecc.signature, [[SIG.sLast, (ecc.signature[SIG.sLast] ?? 0) ^ 0x80]]), ecc.pcrs), exp), 'QUOTE_SIGNATURE_INVALID', 'verifySignature'],
      ['hash of the signature set to SHA-384 (0x000c)', () => verifyQuote(wireOf(ecc.attest, withBytes(ecc.signature, [[SIG.hash + 1, 0x0c]]), ecc.pcrs), exp), 'QUOTE_SIGNATURE_INVALID', 'verifySignature'],
      ['sigAlg ECDSA (0x0018) relabelled RSASSA (0x0014): leaves trailing bytes', () => verifyQuote(wireOf(ecc.attest, withBytes(ecc.signature, [[SIG.sigAlg + 1, 0x14]]), ecc.pcrs), exp), 'TPM_PARSE_ERROR', 'parseSignature'],
      ['signature truncated by one octet', () => verifyQuote(wireOf(ecc.attest, ecc.signature.subarray(0, -1), ecc.pcrs), exp), 'TPM_PARSE_ERROR', 'parseSignature'],
      ['signed by another AK (the RSA AK’s quote checked against the ECC AK)', () => verifyQuote(rsa.wire, { akPublic: ecc.ak.public, qualifyingData: rsa.nonce }), 'QUOTE_SIGNATURE_INVALID', 'verifySignature'],
      ['qualifying data of other claims', () => verifyQuote(ecc.wire, { akPublic: ecc.ak.public, qualifyingData: sha256('other claims') }), 'QUALIFYING_DATA_MISMATCH', 'checkQualifyingData'],
      ['PCR 12 supplied with another value', () => verifyQuote(wireOf(ecc.attest, ecc.signature, new Map([...ecc.pcrs, [12, sha256('x')]])), exp), 'PCR_DIGEST_MISMATCH', 'checkPcrDigest'],
      ['PCR 12 not supplied (quoted but missing)', () => verifyQuote(wireOf(ecc.attest, ecc.signature, new Map([...ecc.pcrs].filter(([i]) => i !== 12))), exp), 'PCR_SELECTION_MISMATCH', 'checkPcrSelection'],
      ['PCR 7 supplied but not quoted', () => verifyQuote(wireOf(ecc.attest, ecc.signature, new Map([...ecc.pcrs, [7, Buffer.alloc(32)]])), exp), 'PCR_SELECTION_MISMATCH', 'checkPcrSelection'],
      ['attest not canonical base64url', () => verifyQuote({ ...ecc.wire, attest: `${ecc.wire.attest}=` }, exp), 'TPM_PARSE_ERROR', 'decode'],
      ['PCR value not 64 hex digits', () => verifyQuote({ ...ecc.wire, pcrs: { sha256: { '0': 'zz' } } }, exp), 'TPM_PARSE_ERROR', 'decode'],
      ['TPM_GENERATED header with a truncated body, signed with the AK private key (no TPM makes this; it reaches the parser)', () => {
        const body = ecc.attest.subarray(0, 60);
        const signature = marshalTpmtSignature(signTpmt(sim.device.engine.object(ecc.ak.handle).privateKey, TPM_ALG.ECDSA, TPM_ALG.SHA256, body));
        return verifyQuote(wireOf(body, signature, ecc.pcrs), exp);
      }, 'TPM_PARSE_ERROR', 'parseAttest'],
      ['the EK (a decryption key) offered as the AK', () => verifyQuote(ecc.wire, { akPublic: sim.device.engine.object(EK_HANDLE['ecc-p256']).publicBytes, qualifyingData: ecc.nonce }), 'AK_ATTRIBUTES_INVALID', 'attestationKey'],
    ];
    for (const [what, fn, code, step] of cases) {
      try {
        rejectsWith(code, step, fn);
      } catch (e) {
        throw new Error(`case "${what}": ${(e as Error).message}`, { cause: e });
      }
    }
  });

  void it('a TPM2_Sign forgery fails the TPM_GENERATED_VALUE check; the TPM refuses to sign magic-prefixed data', () => {
    const engine = sim.device.engine;
    // The attacker can only get TPM2_Sign with the restricted AK for data the TPM hashed and
    // found not to start with TPM_GENERATED_VALUE. So the forgery has another magic.
    const forged = withBytes(ecc.attest, [[0, 0x00]]);
    const { ticket } = engine.hash(forged);
    assert.ok(ticket !== undefined);
    const signature = engine.sign(ecc.ak.handle, forged, ticket);
    rejectsWith('QUOTE_NOT_TPM_GENERATED', 'checkTpmGenerated', () => verifyQuote(wireOf(forged, signature, ecc.pcrs), { akPublic: ecc.ak.public, qualifyingData: ecc.nonce }));

    const honestLooking = engine.hash(ecc.attest);
    assert.equal(honestLooking.ticket, undefined, 'no hash-check ticket for data starting with TPM_GENERATED_VALUE');
    assert.throws(() => engine.sign(ecc.ak.handle, ecc.attest, ticket), (e) => isTrustlaunchError(e, 'TPM_RESPONSE_ERROR') && /TPM_RC_TICKET/.test(e.message));
    assert.throws(() => engine.sign(ecc.ak.handle, ecc.attest, undefined), (e) => isTrustlaunchError(e, 'TPM_RESPONSE_ERROR'));
  });

  void it('a genuine TPM2_Certify by the same AK is not a quote (type step)', () => {
    const c = sim.device.engine.certify(EK_HANDLE['ecc-p256'], ecc.ak.handle, ecc.nonce);
    assert.equal(parseTpmsAttest(c.attest).attested.kind, 'certify');
    rejectsWith('QUOTE_NOT_TPM_GENERATED', 'checkTpmGenerated', () => verifyQuote(wireOf(c.attest, c.signature, ecc.pcrs), { akPublic: ecc.ak.public, qualifyingData: ecc.nonce }));
  });

  void it('any single changed attest byte is rejected (property)', () => {
    fc.assert(
      fc.property(fc.nat({ max: ecc.attest.length - 1 }), fc.integer({ min: 1, max: 255 }), (at, x) => {
        const changed = withBytes(ecc.attest, [[at, (ecc.attest[at] ?? 0) ^ x]]);
        rejectsWith('QUOTE_SIGNATURE_INVALID', 'verifySignature', () => verifyQuote(wireOf(changed, ecc.signature, ecc.pcrs), { akPublic: ecc.ak.public, qualifyingData: ecc.nonce }));
      }),
      { numRuns: 200 },
    );
  });

  void it('arbitrary input never makes the verifier throw anything but a TrustlaunchError', () => {
    const b64 = fc.uint8Array({ maxLength: 200 }).map(toBase64url);
    fc.assert(
      fc.property(fc.oneof(b64, fc.string()), fc.oneof(b64, fc.string()), fc.dictionary(fc.string({ maxLength: 3 }), fc.string({ maxLength: 70 }), { maxKeys: 4 }), (attest, signature, bank) => {
        try {
          verifyQuote({ attest, signature, pcrs: { sha256: bank } }, { akPublic: ecc.ak.public, qualifyingData: ecc.nonce });
          assert.fail('accepted garbage');
        } catch (e) {
          assert.ok(e instanceof TrustlaunchError, String(e));
        }
      }),
      { numRuns: 300 },
    );
  });
});
