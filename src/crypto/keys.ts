// Keys: node:crypto KeyObject is the one currency. This module generates the project's
// key types and moves keys in and out of PEM (SPKI / PKCS#8 only), JWK (RFC 7517/7518)
// and the raw forms a TPM reports (RSA modulus + exponent, ECC x/y). Every import from
// untrusted text is bounded, checked for type and size, and fails with MALFORMED_KEY.
import { createPrivateKey, createPublicKey, generateKeyPairSync, type JsonWebKey, type KeyObject } from 'node:crypto';
import { fromBase64url, toBase64url } from '../protocol/base64url.js';
import { TrustlaunchError, isTrustlaunchError } from '../protocol/errors.js';

/** What the project generates: Ed25519 (SSH, EdDSA receipts) and ECDSA P-256 (TLS, ES256 receipts). */
export type GeneratedKeyType = 'ed25519' | 'ecdsa-p256';

export interface KeyPair {
  readonly publicKey: KeyObject;
  readonly privateKey: KeyObject;
}

/** Curves we import; node:crypto names them prime256v1 / secp384r1. */
export type EcCurve = 'P-256' | 'P-384';
const CURVE_BYTES: Record<EcCurve, number> = { 'P-256': 32, 'P-384': 48 };
const NODE_CURVE: Record<string, EcCurve> = { prime256v1: 'P-256', secp384r1: 'P-384' };

/** RSA sizes we accept (TPM EKs are 2048; 3072/4096 appear in newer EK templates and CAs). */
export const RSA_MODULUS_BITS = [2048, 3072, 4096] as const;

const MAX_PEM_CHARS = 16_384;
const MAX_JWK_MEMBER_CHARS = 1024;

export function generateKeyPair(type: GeneratedKeyType): KeyPair {
  return type === 'ed25519' ? generateKeyPairSync('ed25519') : generateKeyPairSync('ec', { namedCurve: 'P-256' });
}

function malformed(message: string, cause?: unknown): TrustlaunchError {
  return new TrustlaunchError('MALFORMED_KEY', message, cause === undefined ? undefined : { cause });
}

/** The curve of an EC key, or undefined for other keys and curves. */
export function ecCurve(key: KeyObject): EcCurve | undefined {
  if (key.asymmetricKeyType !== 'ec') return undefined;
  return NODE_CURVE[key.asymmetricKeyDetails?.namedCurve ?? ''];
}

/**
 * Accepts only the key types the project handles: Ed25519, ECDSA P-256/P-384 and RSA of
 * 2048/3072/4096 bits (exponent 65537). Returns the key for chaining.
 */
export function assertSupportedKey(key: KeyObject): KeyObject {
  switch (key.asymmetricKeyType) {
    case 'ed25519':
      return key;
    case 'ec':
      if (ecCurve(key) !== undefined) return key;
      throw malformed(`unsupported EC curve ${key.asymmetricKeyDetails?.namedCurve ?? 'unknown'}`);
    case 'rsa': {
      const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
      if (!(RSA_MODULUS_BITS as readonly number[]).includes(bits)) throw malformed(`unsupported RSA modulus length ${bits}`);
      if (key.asymmetricKeyDetails?.publicExponent !== 65537n) throw malformed('RSA public exponent must be 65537');
      return key;
    }
    default:
      throw malformed(`unsupported key type ${key.asymmetricKeyType ?? 'unknown'}`);
  }
}

// --- PEM and DER ----------------------------------------------------------------------

function pemBody(pem: string, label: 'PUBLIC KEY' | 'PRIVATE KEY'): Buffer {
  if (pem.length > MAX_PEM_CHARS) throw malformed(`PEM longer than ${MAX_PEM_CHARS} characters`);
  const m = new RegExp(`^\\s*-----BEGIN ${label}-----\\r?\\n([A-Za-z0-9+/=\\r\\n]+)-----END ${label}-----\\s*$`).exec(pem);
  if (m === null) throw malformed(`expected exactly one PEM "${label}" block`);
  const body = (m[1] as string).replace(/\r?\n/g, '');
  const der = Buffer.from(body, 'base64');
  if (der.toString('base64') !== body) throw malformed('PEM body is not canonical base64');
  return der;
}

/** Parses a public key from SPKI DER. */
export function publicKeyFromSpki(der: Uint8Array): KeyObject {
  if (der.length > MAX_PEM_CHARS) throw malformed('SubjectPublicKeyInfo too large');
  let key: KeyObject;
  try {
    key = createPublicKey({ key: Buffer.from(der), format: 'der', type: 'spki' });
  } catch (e) {
    throw malformed('not a SubjectPublicKeyInfo', e);
  }
  return assertSupportedKey(key);
}

/** Parses a "PUBLIC KEY" (SPKI) PEM block; certificates and private keys are refused. */
export function importPublicKeyPem(pem: string): KeyObject {
  return publicKeyFromSpki(pemBody(pem, 'PUBLIC KEY'));
}

/** Parses an unencrypted "PRIVATE KEY" (PKCS#8) PEM block. */
export function importPrivateKeyPem(pem: string): KeyObject {
  const der = pemBody(pem, 'PRIVATE KEY');
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  } catch (e) {
    throw malformed('not a PKCS#8 private key', e);
  }
  assertSupportedKey(createPublicKey(key));
  return key;
}

export function spkiDer(key: KeyObject): Buffer {
  return (key.type === 'private' ? createPublicKey(key) : key).export({ type: 'spki', format: 'der' });
}

export function exportPublicKeyPem(key: KeyObject): string {
  return (key.type === 'private' ? createPublicKey(key) : key).export({ type: 'spki', format: 'pem' }).toString();
}

export function exportPrivateKeyPem(key: KeyObject): string {
  if (key.type !== 'private') throw new TypeError('exportPrivateKeyPem needs a private key');
  return key.export({ type: 'pkcs8', format: 'pem' }).toString();
}

// --- JWK --------------------------------------------------------------------------------

/** A public JWK with only the members that define the key (RFC 7517 §4, RFC 7518 §6, RFC 8037 §2). */
export type PublicJwk =
  | { readonly kty: 'OKP'; readonly crv: 'Ed25519'; readonly x: string }
  | { readonly kty: 'EC'; readonly crv: EcCurve; readonly x: string; readonly y: string }
  | { readonly kty: 'RSA'; readonly n: string; readonly e: string };

/** The public JWK of a key (private keys give their public half). */
export function exportPublicJwk(key: KeyObject): PublicJwk {
  const pub = assertSupportedKey(key.type === 'private' ? createPublicKey(key) : key);
  const jwk = pub.export({ format: 'jwk' });
  switch (pub.asymmetricKeyType) {
    case 'ed25519':
      return { kty: 'OKP', crv: 'Ed25519', x: jwk.x as string };
    case 'ec':
      return { kty: 'EC', crv: ecCurve(pub) as EcCurve, x: jwk.x as string, y: jwk.y as string };
    default:
      return { kty: 'RSA', n: jwk.n as string, e: jwk.e as string };
  }
}

/** JWK members that may accompany a public key; anything private or unknown is refused. */
const ALLOWED_JWK_MEMBERS = new Set(['kty', 'crv', 'x', 'y', 'n', 'e', 'kid', 'alg', 'use', 'key_ops']);

function jwkMember(jwk: Record<string, unknown>, name: string): string {
  const value = jwk[name];
  if (typeof value !== 'string' || value.length > MAX_JWK_MEMBER_CHARS) throw malformed(`JWK member "${name}" missing or not a short string`);
  fromBase64url(value, 'MALFORMED_KEY');
  return value;
}

/** Parses an untrusted public JWK (OKP Ed25519, EC P-256/P-384, RSA); private members are refused. */
export function importPublicJwk(input: unknown): KeyObject {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) throw malformed('a JWK is a JSON object');
  const jwk = input as Record<string, unknown>;
  const extra = Object.keys(jwk).find((k) => !ALLOWED_JWK_MEMBERS.has(k));
  if (extra !== undefined) throw malformed(`JWK member "${extra}" is not allowed in a public key`);
  let normalized: JsonWebKey;
  switch (jwk['kty']) {
    case 'OKP':
      if (jwk['crv'] !== 'Ed25519') throw malformed('only the Ed25519 OKP curve is supported');
      normalized = { kty: 'OKP', crv: 'Ed25519', x: jwkMember(jwk, 'x') };
      break;
    case 'EC':
      if (jwk['crv'] !== 'P-256' && jwk['crv'] !== 'P-384') throw malformed('only P-256 and P-384 EC keys are supported');
      normalized = { kty: 'EC', crv: jwk['crv'], x: jwkMember(jwk, 'x'), y: jwkMember(jwk, 'y') };
      break;
    case 'RSA':
      normalized = { kty: 'RSA', n: jwkMember(jwk, 'n'), e: jwkMember(jwk, 'e') };
      break;
    default:
      throw malformed('JWK kty must be OKP, EC or RSA');
  }
  try {
    return assertSupportedKey(createPublicKey({ key: normalized, format: 'jwk' }));
  } catch (e) {
    if (isTrustlaunchError(e)) throw e;
    throw malformed('the JWK does not describe a valid public key (point not on the curve, bad length?)', e);
  }
}

// --- raw TPM forms ------------------------------------------------------------------------

function unsignedBytes(value: Uint8Array): Buffer {
  let i = 0;
  while (i < value.length - 1 && value[i] === 0) i++;
  return Buffer.from(value.subarray(i));
}

/**
 * An RSA public key from a TPM2B_PUBLIC_KEY_RSA modulus and TPMS_RSA_PARMS exponent
 * (TPM 2.0 Part 2 §12.2.3.5: an exponent of 0 means the default 2^16 + 1).
 */
export function rsaPublicKeyFromModulus(modulus: Uint8Array, exponent: number = 0): KeyObject {
  const n = unsignedBytes(modulus);
  if (!(RSA_MODULUS_BITS as readonly number[]).includes(n.length * 8) || ((n[0] as number) & 0x80) === 0) {
    throw malformed(`RSA modulus must be exactly 2048, 3072 or 4096 bits (got ${modulus.length} bytes)`);
  }
  const e = exponent === 0 ? 65537 : exponent;
  if (e !== 65537) throw malformed('RSA public exponent must be 65537');
  return importPublicJwk({ kty: 'RSA', n: toBase64url(n), e: toBase64url(Buffer.from([0x01, 0x00, 0x01])) });
}

/**
 * An EC public key from the affine coordinates of a TPMS_ECC_POINT (Part 2 §11.2.5.2);
 * each coordinate is left-padded to the curve size. The point must lie on the curve.
 */
export function ecPublicKeyFromXY(curve: EcCurve, x: Uint8Array, y: Uint8Array): KeyObject {
  const size = CURVE_BYTES[curve];
  const pad = (c: Uint8Array, name: string): Buffer => {
    const v = unsignedBytes(c);
    if (v.length > size) throw malformed(`EC ${name} coordinate longer than ${size} bytes`);
    return Buffer.concat([Buffer.alloc(size - v.length), v]);
  };
  return importPublicJwk({ kty: 'EC', crv: curve, x: toBase64url(pad(x, 'x')), y: toBase64url(pad(y, 'y')) });
}

/** The affine coordinates of an EC public key, each `size` bytes. */
export function ecPublicKeyXY(key: KeyObject): { curve: EcCurve; x: Buffer; y: Buffer } {
  const jwk = exportPublicJwk(key);
  if (jwk.kty !== 'EC') throw new TypeError('not an EC key');
  return { curve: jwk.crv, x: fromBase64url(jwk.x), y: fromBase64url(jwk.y) };
}

/** The raw 32-byte Ed25519 public key (RFC 8032 §5.1.5). */
export function ed25519PublicBytes(key: KeyObject): Buffer {
  const jwk = exportPublicJwk(key);
  if (jwk.kty !== 'OKP') throw new TypeError('not an Ed25519 key');
  return fromBase64url(jwk.x);
}

export function ed25519PublicKeyFromBytes(raw: Uint8Array): KeyObject {
  if (raw.length !== 32) throw malformed('an Ed25519 public key is 32 bytes');
  return importPublicJwk({ kty: 'OKP', crv: 'Ed25519', x: toBase64url(raw) });
}
