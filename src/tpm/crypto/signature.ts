// Signatures as TPMT_SIGNATURE: verification of RSASSA (PKCS#1 v1.5), RSAPSS and ECDSA
// over a message with node:crypto, and the signing side a TPM model needs. ECDSA r, s
// travel as TPM2B_ECC_PARAMETER; node takes them as r ‖ s padded to the curve size
// (IEEE P1363), which is the DER SEQUENCE{r, s} without the ASN.1.
import { constants, sign, verify, type KeyObject } from 'node:crypto';
import { TPM_ALG } from '../constants.js';
import type { TpmtSignature } from '../structures/signature.js';
import { hashSize, nodeHashName } from './hash.js';
import { padTo } from './public-key.js';

/** Coordinate size in octets of an EC key's curve (32 for P-256, 48 for P-384, 66 for P-521). */
function ecSize(key: KeyObject): number {
  const curve = key.asymmetricKeyDetails?.namedCurve;
  switch (curve) {
    case 'prime256v1':
      return 32;
    case 'secp384r1':
      return 48;
    case 'secp521r1':
      return 66;
    default:
      throw new RangeError(`unsupported curve ${String(curve)}`);
  }
}

/**
 * True when `sig` is a valid signature of `message` by `key`. False for a wrong signature,
 * a scheme that does not fit the key, or an r/s longer than the curve; never throws for
 * attacker-chosen signature contents.
 */
export function verifyTpmtSignature(key: KeyObject, sig: TpmtSignature, message: Uint8Array): boolean {
  const keyType = key.asymmetricKeyType;
  try {
    switch (sig.sigAlg) {
      case TPM_ALG.ECDSA: {
        if (keyType !== 'ec') return false;
        const size = ecSize(key);
        if (sig.signatureR.length > size || sig.signatureS.length > size) return false;
        // r and s are almost always full-length already; pad only when a TPM stripped zeros
        const full = sig.signatureR.length === size && sig.signatureS.length === size;
        const p1363 = full ? Buffer.concat([sig.signatureR, sig.signatureS], 2 * size) : Buffer.concat([padTo(sig.signatureR, size), padTo(sig.signatureS, size)]);
        return verify(nodeHashName(sig.hash), message, { key, dsaEncoding: 'ieee-p1363' }, p1363);
      }
      case TPM_ALG.RSASSA:
        if (keyType !== 'rsa') return false;
        return verify(nodeHashName(sig.hash), message, { key, padding: constants.RSA_PKCS1_PADDING }, sig.sig);
      case TPM_ALG.RSAPSS:
        if (keyType !== 'rsa') return false;
        return verify(nodeHashName(sig.hash), message, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_AUTO }, sig.sig);
      default:
        return false;
    }
  } catch {
    // node rejects malformed signatures (e.g. r = 0) by throwing; to a verifier that is "invalid".
    return false;
  }
}

/** Signs `message` as a TPM would for `scheme` (ECDSA, RSASSA or RSAPSS with salt = digest size). */
export function signTpmt(key: KeyObject, scheme: number, hashAlg: number, message: Uint8Array): TpmtSignature {
  const hash = nodeHashName(hashAlg);
  switch (scheme) {
    case TPM_ALG.ECDSA: {
      const size = ecSize(key);
      const p1363 = sign(hash, message, { key, dsaEncoding: 'ieee-p1363' });
      return { sigAlg: TPM_ALG.ECDSA, hash: hashAlg, signatureR: p1363.subarray(0, size), signatureS: p1363.subarray(size) };
    }
    case TPM_ALG.RSASSA:
      return { sigAlg: TPM_ALG.RSASSA, hash: hashAlg, sig: sign(hash, message, { key, padding: constants.RSA_PKCS1_PADDING }) };
    case TPM_ALG.RSAPSS:
      return { sigAlg: TPM_ALG.RSAPSS, hash: hashAlg, sig: sign(hash, message, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: hashSize(hashAlg) }) };
    default:
      throw new RangeError(`cannot sign with scheme 0x${scheme.toString(16)}`);
  }
}

function derInteger(v: Uint8Array): Buffer {
  let i = 0;
  while (i < v.length - 1 && v[i] === 0) i++;
  let body = Buffer.from(v.subarray(i));
  if (body.length === 0) body = Buffer.alloc(1);
  if ((body[0] ?? 0) & 0x80) body = Buffer.concat([Buffer.alloc(1), body]);
  return Buffer.concat([Buffer.from([0x02, body.length]), body]);
}

/** ECDSA r, s as DER SEQUENCE { INTEGER r, INTEGER s } (what `openssl dgst -verify` reads). */
export function ecdsaSignatureToDer(r: Uint8Array, s: Uint8Array): Buffer {
  const body = Buffer.concat([derInteger(r), derInteger(s)]);
  const len = body.length < 0x80 ? Buffer.from([body.length]) : Buffer.from([0x81, body.length]);
  return Buffer.concat([Buffer.from([0x30]), len, body]);
}
