// Real structures captured from swtpm + tpm2-tools (test/fixtures/tpm/capture.sh): our
// unmarshallers parse them, compute the Names tpm2_readpublic -n printed and the
// qualified names of -q, our EK templates rebuild the EK public areas byte for byte, and
// the quote verifier accepts the real quotes (ECDSA and RSASSA).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parseCertificate, verifyChainSync } from '../../src/crypto/x509.js';
import { toBase64url } from '../../src/protocol/base64url.js';
import { TPM_ALG, TPM_GENERATED_VALUE, TPM_RH, TPM_ST } from '../../src/tpm/constants.js';
import { handleName, objectName, qualifiedName } from '../../src/tpm/crypto/name.js';
import { publicKeyOf } from '../../src/tpm/crypto/public-key.js';
import { verifyQuote } from '../../src/tpm/quote/verify.js';
import { parseTpmsAttest } from '../../src/tpm/structures/attest.js';
import { objectAttributeNames, TPMA_OBJECT } from '../../src/tpm/structures/object-attributes.js';
import { registrableAttestationKey } from '../../src/tpm/quote/attestation-key.js';
import { isTrustlaunchError } from '../../src/protocol/errors.js';
import { marshalTpm2bPublic, marshalTpmtPublic, parseTpm2bPublic, type TpmtPublic } from '../../src/tpm/structures/public.js';
import { parseTpmtSignature } from '../../src/tpm/structures/signature.js';
import { EK_TEMPLATE_ECC_P256, EK_TEMPLATE_ECC_P384, EK_TEMPLATE_RSA2048, AK_TEMPLATE_ECC_P256, AK_TEMPLATE_RSA2048 } from '../../src/tpm/templates.js';
import { parseTssPcrsFile, tssPcrsFile } from '../support/tpm2-tools.js';

const dir = new URL('../fixtures/tpm/swtpm/', import.meta.url);
const file = (name: string): Buffer => readFileSync(new URL(name, dir));

/** TPMT_PUBLIC bytes inside a TPM2B_PUBLIC file. */
const tpmt = (name: string): Buffer => file(name).subarray(2);

function withUnique(template: TpmtPublic, real: TpmtPublic): TpmtPublic {
  return { ...template, unique: real.unique } as TpmtPublic;
}

void describe('swtpm fixtures', () => {
  void it('parses every public area and round-trips it byte for byte', () => {
    for (const name of ['ek-rsa2048.pub', 'ek-ecc384.pub', 'ek-ecc256.pub', 'ak-ecc.pub', 'ak-rsa.pub']) {
      const pub = parseTpm2bPublic(file(name));
      assert.deepEqual(marshalTpm2bPublic(pub), file(name), name);
    }
  });

  void it('computes the Names tpm2_readpublic -n printed', () => {
    for (const key of ['ek-rsa2048', 'ek-ecc384', 'ek-ecc256', 'ak-ecc', 'ak-rsa']) {
      assert.deepEqual(objectName(tpmt(`${key}.pub`)), file(`${key}.name`), key);
    }
  });

  void it('computes the qualified names of AKs under the RSA EK as tpm2_readpublic -q printed', () => {
    const ekQn = qualifiedName(handleName(TPM_RH.ENDORSEMENT), file('ek-rsa2048.name'), TPM_ALG.SHA256);
    for (const ak of ['ak-ecc', 'ak-rsa']) {
      assert.deepEqual(qualifiedName(ekQn, file(`${ak}.name`), TPM_ALG.SHA256), file(`${ak}.qname`), ak);
    }
  });

  void it('rebuilds the EK and AK public areas from our templates plus the key (so names match a real TPM)', () => {
    const cases: [string, TpmtPublic][] = [
      ['ek-rsa2048.pub', EK_TEMPLATE_RSA2048],
      ['ek-ecc256.pub', EK_TEMPLATE_ECC_P256],
      ['ek-ecc384.pub', EK_TEMPLATE_ECC_P384],
      ['ak-ecc.pub', AK_TEMPLATE_ECC_P256],
      ['ak-rsa.pub', AK_TEMPLATE_RSA2048],
    ];
    for (const [name, template] of cases) {
      const real = parseTpm2bPublic(file(name));
      assert.deepEqual(marshalTpmtPublic(withUnique(template, real)), tpmt(name), name);
    }
    assert.deepEqual(objectAttributeNames(parseTpm2bPublic(file('ak-ecc.pub')).objectAttributes), [
      'fixedTPM',
      'fixedParent',
      'sensitiveDataOrigin',
      'userWithAuth',
      'restricted',
      'sign',
    ]);
  });

  void it('converts the AK public areas to the keys tpm2_readpublic -f pem exported', () => {
    for (const ak of ['ak-ecc', 'ak-rsa']) {
      const ours = publicKeyOf(parseTpm2bPublic(file(`${ak}.pub`))).export({ type: 'spki', format: 'pem' }).toString();
      assert.equal(ours, file(`${ak}.pem`).toString(), ak);
    }
  });

  void it('registrableAttestationKey accepts the real AKs with their names and refuses the rest with its codes', () => {
    for (const ak of ['ak-ecc', 'ak-rsa']) registrableAttestationKey(tpmt(`${ak}.pub`), file(`${ak}.name`));
    const refused = (pub: Uint8Array, name: Uint8Array, code: string): void => {
      assert.throws(() => registrableAttestationKey(pub, name), (e) => isTrustlaunchError(e) && e.code === code);
    };
    refused(tpmt('ak-ecc.pub'), file('ak-rsa.name'), 'AK_NAME_MISMATCH');
    refused(tpmt('ek-rsa2048.pub'), file('ek-rsa2048.name'), 'AK_ATTRIBUTES_INVALID');
    const ak = parseTpm2bPublic(file('ak-ecc.pub'));
    const movable = marshalTpmtPublic({ ...ak, objectAttributes: ak.objectAttributes & ~TPMA_OBJECT.fixedTPM });
    refused(movable, objectName(movable), 'AK_ATTRIBUTES_INVALID');
    const unrestricted = marshalTpmtPublic({ ...ak, objectAttributes: ak.objectAttributes & ~TPMA_OBJECT.restricted });
    refused(unrestricted, objectName(unrestricted), 'AK_ATTRIBUTES_INVALID');
  });

  void it('the swtpm_setup EK certificates certify the EK public areas and chain to the local CA', () => {
    const roots = [parseCertificate(file('localca-root.pem'))];
    const intermediates = [parseCertificate(file('localca-issuer.pem'))];
    for (const key of ['ek-rsa2048', 'ek-ecc384']) {
      const cert = parseCertificate(file(`${key}.crt.der`));
      assert.ok(cert.publicKey.equals(publicKeyOf(parseTpm2bPublic(file(`${key}.pub`)))), key);
      assert.equal(verifyChainSync(cert, { roots, intermediates }).length, 3, key);
    }
  });

  for (const alg of ['ecc', 'rsa'] as const) {
    void it(`parses the real ${alg} quote and its signature, and the verifier accepts it`, () => {
      const msg = file(`quote-${alg}.msg`);
      const nonce = Buffer.from(file(`quote-${alg}.nonce.hex`).toString().trim(), 'hex');
      const attest = parseTpmsAttest(msg);
      assert.equal(attest.magic, TPM_GENERATED_VALUE);
      assert.equal(attest.type, TPM_ST.ATTEST_QUOTE);
      assert.deepEqual(Buffer.from(attest.extraData), nonce);
      assert.deepEqual(Buffer.from(attest.qualifiedSigner), file(`ak-${alg}.qname`), 'qualifiedSigner is the AK qualified name');
      const sig = parseTpmtSignature(file(`quote-${alg}.sig`));
      assert.equal(sig.sigAlg, alg === 'ecc' ? TPM_ALG.ECDSA : TPM_ALG.RSASSA);

      const pcrFile = file(`quote-${alg}.pcrs`);
      const pcrs = parseTssPcrsFile(pcrFile);
      assert.deepEqual([...pcrs.keys()], [0, 4, 5, 16, 23]);
      assert.deepEqual(tssPcrsFile(pcrs), pcrFile, 'our tpm2-tools PCR file writer reproduces the tool’s file');

      const verified = verifyQuote(
        { attest: toBase64url(msg), signature: toBase64url(file(`quote-${alg}.sig`)), pcrs: { sha256: Object.fromEntries([...pcrs].map(([i, v]) => [String(i), v.toString('hex')])) } },
        { akPublic: tpmt(`ak-${alg}.pub`), qualifyingData: nonce },
      );
      assert.deepEqual(verified.extraData, nonce);
      assert.equal(verified.clockInfo.resetCount, attest.clockInfo.resetCount);
      assert.equal(verified.firmwareVersion, attest.firmwareVersion);
      assert.ok(verified.firmwareVersion > 2n ** 32n, 'the 64-bit firmwareVersion keeps its high bits');
    });
  }
});
