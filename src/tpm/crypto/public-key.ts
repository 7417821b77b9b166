// TPMT_PUBLIC ↔ node:crypto KeyObject for the asymmetric types: RSA (n, e; exponent 0
// means 65537, Part 2 §12.2.3.5) and ECC (x, y on a NIST curve, Part 2 §11.2.5.2).
import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { TrustlaunchError } from '../../protocol/errors.js';
import { ECC_CURVES, TPM_ALG, TPM_ECC_CURVE } from '../constants.js';
import type { TpmtPublic, TpmtPublicEcc, TpmtPublicRsa } from '../structures/public.js';

const DEFAULT_EXPONENT = 65537;

function stripLeadingZeros(b: Uint8Array): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  return Buffer.from(b.subarray(i));
}

/** Left-pads a big-endian integer to `size` octets; RangeError when it does not fit. */
export function padTo(b: Uint8Array, size: number): Buffer {
  const v = stripLeadingZeros(b);
  if (v.length > size) throw new RangeError(`${v.length} octets do not fit ${size}`);
  return Buffer.concat([Buffer.alloc(size - v.length), v]);
}

function bad(why: string, cause?: unknown): TrustlaunchError {
  return new TrustlaunchError('MALFORMED_KEY', `TPMT_PUBLIC: ${why}`, cause === undefined ? undefined : { cause });
}

function rsaKey(p: TpmtPublicRsa): KeyObject {
  const bits = p.parameters.keyBits;
  if (bits < 1024 || bits > 4096 || bits % 8 !== 0) throw bad(`RSA keyBits ${bits} unsupported`);
  if (p.unique.length !== bits / 8) throw bad(`modulus has ${p.unique.length} octets, keyBits says ${bits}`);
  const e = Buffer.alloc(4);
  e.writeUInt32BE(p.parameters.exponent === 0 ? DEFAULT_EXPONENT : p.parameters.exponent);
  const jwk: JsonWebKey = { kty: 'RSA', n: stripLeadingZeros(p.unique).toString('base64url'), e: stripLeadingZeros(e).toString('base64url') };
  try {
    return createPublicKey({ key: jwk, format: 'jwk' });
  } catch (cause) {
    throw bad('RSA public key rejected', cause);
  }
}

function eccKey(p: TpmtPublicEcc): KeyObject {
  const curve = ECC_CURVES.get(p.parameters.curveID);
  if (curve?.jwk === undefined) throw bad(`ECC curve 0x${p.parameters.curveID.toString(16)} unsupported`);
  let x: Buffer, y: Buffer;
  try {
    x = padTo(p.unique.x, curve.size);
    y = padTo(p.unique.y, curve.size);
  } catch (cause) {
    throw bad('ECC coordinate longer than the curve size', cause);
  }
  try {
    // JWK import checks that the point lies on the curve.
    return createPublicKey({ key: { kty: 'EC', crv: curve.jwk, x: x.toString('base64url'), y: y.toString('base64url') }, format: 'jwk' });
  } catch (cause) {
    throw bad('ECC point is not on the curve', cause);
  }
}

/** The public key of an RSA or ECC public area; MALFORMED_KEY for anything else or an invalid key. */
export function publicKeyOf(p: TpmtPublic): KeyObject {
  switch (p.type) {
    case TPM_ALG.RSA:
      return rsaKey(p);
    case TPM_ALG.ECC:
      return eccKey(p);
    default:
      throw bad('not an asymmetric key (RSA or ECC)');
  }
}

const CURVE_BY_JWK: ReadonlyMap<string, number> = new Map([
  ['P-256', TPM_ECC_CURVE.NIST_P256],
  ['P-384', TPM_ECC_CURVE.NIST_P384],
  ['P-521', TPM_ECC_CURVE.NIST_P521],
]);

/** The `unique` field of a public area for `key` (RSA modulus, or ECC x/y padded to the curve size). */
export function uniqueOf(key: KeyObject): { type: typeof TPM_ALG.RSA; n: Buffer; exponent: number } | { type: typeof TPM_ALG.ECC; curveID: number; x: Buffer; y: Buffer } {
  const jwk = key.export({ format: 'jwk' });
  if (jwk.kty === 'RSA' && jwk.n !== undefined && jwk.e !== undefined) {
    const e = Buffer.from(jwk.e, 'base64url');
    const exponent = e.readUIntBE(0, e.length);
    return { type: TPM_ALG.RSA, n: Buffer.from(jwk.n, 'base64url'), exponent: exponent === DEFAULT_EXPONENT ? 0 : exponent };
  }
  if (jwk.kty === 'EC' && jwk.crv !== undefined && jwk.x !== undefined && jwk.y !== undefined) {
    const curveID = CURVE_BY_JWK.get(jwk.crv);
    const size = curveID === undefined ? undefined : ECC_CURVES.get(curveID)?.size;
    if (curveID === undefined || size === undefined) throw new RangeError(`curve ${jwk.crv} has no TPM_ECC_CURVE here`);
    return { type: TPM_ALG.ECC, curveID, x: padTo(Buffer.from(jwk.x, 'base64url'), size), y: padTo(Buffer.from(jwk.y, 'base64url'), size) };
  }
  throw new RangeError(`key type ${String(jwk.kty)} is not RSA or EC`);
}

/** `template` with its unique field (and RSA exponent) set from `key`; the key must match the template's type and curve. */
export function publicAreaFor(template: TpmtPublic, key: KeyObject): TpmtPublic {
  const u = uniqueOf(key);
  if (template.type === TPM_ALG.RSA && u.type === TPM_ALG.RSA) {
    if (u.n.length * 8 !== template.parameters.keyBits) throw new RangeError(`RSA key has ${u.n.length * 8} bits, template wants ${template.parameters.keyBits}`);
    return { ...template, parameters: { ...template.parameters, exponent: u.exponent }, unique: u.n };
  }
  if (template.type === TPM_ALG.ECC && u.type === TPM_ALG.ECC) {
    if (u.curveID !== template.parameters.curveID) throw new RangeError('ECC key is on another curve than the template');
    return { ...template, unique: { x: u.x, y: u.y } };
  }
  throw new RangeError('key type does not match the template');
}
