// Signatures with the project's algorithms, and the two encodings of an ECDSA signature:
// DER `Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` (X.509, OpenSSL, TPM2_Sign
// output through tpm2-tools) and IEEE P1363 `r ‖ s`, each left-padded to the curve size
// (JWS, RFC 7518 §3.4; and a TPMS_SIGNATURE_ECDSA's two TPM2B values).
import { sign as nodeSign, verify as nodeVerify, type KeyObject } from 'node:crypto';
import { TrustlaunchError, type ErrorCode } from '../protocol/errors.js';
import { TAG, readChildren, readWhole, tlv } from './der.js';
import { ecCurve } from './keys.js';

/** JOSE names (RFC 7518 §3.1, RFC 8037 §3.1). */
export type SignatureAlgorithm = 'ES256' | 'ES384' | 'EdDSA';

const CURVE_OF: Record<'ES256' | 'ES384', { curve: 'P-256' | 'P-384'; hash: string; size: number }> = {
  ES256: { curve: 'P-256', hash: 'sha256', size: 32 },
  ES384: { curve: 'P-384', hash: 'sha384', size: 48 },
};

/** The algorithm a key signs with: Ed25519 → EdDSA, P-256 → ES256, P-384 → ES384. */
export function algorithmForKey(key: KeyObject): SignatureAlgorithm {
  if (key.asymmetricKeyType === 'ed25519') return 'EdDSA';
  const curve = ecCurve(key);
  if (curve === 'P-256') return 'ES256';
  if (curve === 'P-384') return 'ES384';
  throw new TrustlaunchError('MALFORMED_KEY', `no signature algorithm for a ${key.asymmetricKeyType ?? 'unknown'} key here`);
}

function checkKey(alg: SignatureAlgorithm, key: KeyObject): void {
  if (algorithmForKey(key) !== alg) throw new TypeError(`a ${alg} signature needs a matching key`);
}

/** Signs `data`; ECDSA signatures come out as P1363 `r ‖ s` (JWS form) unless `der` is asked for. */
export function signMessage(alg: SignatureAlgorithm, privateKey: KeyObject, data: Uint8Array, encoding: 'p1363' | 'der' = 'p1363'): Buffer {
  checkKey(alg, privateKey);
  if (alg === 'EdDSA') return nodeSign(null, data, privateKey);
  return nodeSign(CURVE_OF[alg].hash, data, { key: privateKey, dsaEncoding: encoding === 'der' ? 'der' : 'ieee-p1363' });
}

/** Verifies a signature; false (never an exception) for any malformed or wrong signature. */
export function verifyMessage(alg: SignatureAlgorithm, publicKey: KeyObject, data: Uint8Array, signature: Uint8Array, encoding: 'p1363' | 'der' = 'p1363'): boolean {
  checkKey(alg, publicKey);
  try {
    if (alg === 'EdDSA') return signature.length === 64 && nodeVerify(null, data, publicKey, signature);
    const { hash, size } = CURVE_OF[alg];
    if (encoding === 'p1363' && signature.length !== 2 * size) return false;
    return nodeVerify(hash, data, { key: publicKey, dsaEncoding: encoding === 'der' ? 'der' : 'ieee-p1363' }, signature);
  } catch {
    return false;
  }
}

// --- encodings ------------------------------------------------------------------------

function derPositiveInteger(value: Buffer): Buffer {
  let i = 0;
  while (i < value.length - 1 && value[i] === 0) i++;
  const v = value.subarray(i);
  return tlv(TAG.INTEGER, ((v[0] as number) & 0x80) !== 0 ? Buffer.concat([Buffer.from([0]), v]) : v);
}

/** P1363 `r ‖ s` (each `size` bytes) → DER Ecdsa-Sig-Value. */
export function p1363ToDer(signature: Uint8Array, code: ErrorCode = 'MALFORMED_REQUEST'): Buffer {
  if (signature.length === 0 || signature.length % 2 !== 0 || signature.length > 132) {
    throw new TrustlaunchError(code, 'a P1363 ECDSA signature is r ‖ s of equal, even total length');
  }
  const half = signature.length / 2;
  const bytes = Buffer.from(signature);
  return tlv(TAG.SEQUENCE, derPositiveInteger(bytes.subarray(0, half)), derPositiveInteger(bytes.subarray(half)));
}

/** DER Ecdsa-Sig-Value → P1363 `r ‖ s`, each left-padded to `size` bytes (32 for P-256, 48 for P-384). */
export function derToP1363(der: Uint8Array, size: number, code: ErrorCode = 'MALFORMED_REQUEST'): Buffer {
  const seq = readWhole(Buffer.from(der), code);
  const parts = readChildren(seq, code);
  if (seq.tag !== TAG.SEQUENCE || parts.length !== 2) throw new TrustlaunchError(code, 'not an Ecdsa-Sig-Value');
  const out = parts.map((p) => {
    const c = p.content;
    // DER INTEGER: positive and minimally encoded
    if (p.tag !== TAG.INTEGER || c.length === 0 || ((c[0] as number) & 0x80) !== 0 || (c.length > 1 && c[0] === 0 && ((c[1] as number) & 0x80) === 0)) {
      throw new TrustlaunchError(code, 'r and s must be positive, minimally encoded INTEGERs');
    }
    const v = c[0] === 0 ? c.subarray(1) : c;
    if (v.length > size) throw new TrustlaunchError(code, `r or s longer than ${size} bytes`);
    return Buffer.concat([Buffer.alloc(size - v.length), v]);
  });
  return Buffer.concat(out);
}
