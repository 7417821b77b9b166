// Credential protection (Part 1 §24, TPM2_MakeCredential / TPM2_ActivateCredential in
// Part 3 §12.6 and §12.5). Steps, each named below:
//   1. seed: RSA EK: random seed, encrypted with RSA-OAEP(nameAlg, label "IDENTITY\0");
//      ECC EK: ephemeral ECDH, seed = KDFe(nameAlg, Z, "IDENTITY", eph.x, ek.x).
//   2. symKey  = KDFa(nameAlg, seed, "STORAGE", objectName, "", EK symmetric keyBits)
//   3. encIdentity = AES-CFB(symKey, IV = 0, TPM2B_DIGEST(credential))
//   4. hmacKey = KDFa(nameAlg, seed, "INTEGRITY", "", "", digest bits)
//   5. integrityHMAC = HMAC(nameAlg, hmacKey, encIdentity ‖ objectName)
// The activate side redoes 1 with the EK private key, checks 5 before decrypting (an
// integrity failure means the blob was made for another object name or another EK).
import {
  constants,
  createCipheriv,
  createDecipheriv,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  privateDecrypt,
  publicEncrypt,
  randomBytes,
  timingSafeEqual,
  type KeyObject,
} from 'node:crypto';
import { TrustlaunchError } from '../../protocol/errors.js';
import { ECC_CURVES, TPM_ALG, algName } from '../constants.js';
import type { TpmReader} from '../marshal/reader.js';
import { parseWhole } from '../marshal/reader.js';
import { TpmWriter } from '../marshal/writer.js';
import { marshalTpmsIdObject, parseTpmsIdObject } from '../structures/credential.js';
import { hasAttributes } from '../structures/object-attributes.js';
import { readTpmsEccPoint, writeTpmsEccPoint, type TpmtPublic } from '../structures/public.js';
import { Tpm2bDigest } from '../structures/sized.js';
import { hashSize, nodeHashName, tpmHmac } from './hash.js';
import { kdfa, kdfe } from './kdf.js';
import { padTo, publicKeyOf } from './public-key.js';

export const IDENTITY_LABEL = 'IDENTITY';

export interface Credential {
  /** TPM2B_ID_OBJECT contents: TPM2B_DIGEST integrityHMAC ‖ encIdentity. */
  readonly credentialBlob: Buffer;
  /** TPM2B_ENCRYPTED_SECRET contents: RSA-OAEP ciphertext or a marshalled TPMS_ECC_POINT. */
  readonly encryptedSecret: Buffer;
}

/** What the EK's public area fixes for credential protection. */
interface Protection {
  readonly nameAlg: number;
  readonly digestBits: number;
  readonly cipher: string;
  readonly keyBits: number;
}

/** The EK must be a storage key (restricted decrypt, AES-CFB symmetric), as TPM2_MakeCredential checks (TPM_RC_TYPE). */
export function protectionOf(ek: TpmtPublic): Protection {
  const unsuitable = (why: string): TrustlaunchError => new TrustlaunchError('MALFORMED_KEY', `EK public area cannot protect a credential: ${why}`);
  if (ek.type !== TPM_ALG.RSA && ek.type !== TPM_ALG.ECC) throw unsuitable(`type ${algName(ek.type)}`);
  if (!hasAttributes(ek.objectAttributes, 'restricted', 'decrypt') || hasAttributes(ek.objectAttributes, 'sign')) {
    throw unsuitable('not a restricted decryption key');
  }
  if (ek.nameAlg !== TPM_ALG.SHA256 && ek.nameAlg !== TPM_ALG.SHA384 && ek.nameAlg !== TPM_ALG.SHA512) throw unsuitable(`nameAlg ${algName(ek.nameAlg)}`);
  const sym = ek.parameters.symmetric;
  if (!('keyBits' in sym) || sym.algorithm !== TPM_ALG.AES || sym.mode !== TPM_ALG.CFB || ![128, 192, 256].includes(sym.keyBits)) {
    throw unsuitable('symmetric is not AES-CFB');
  }
  return { nameAlg: ek.nameAlg, digestBits: hashSize(ek.nameAlg) * 8, cipher: `aes-${sym.keyBits}-cfb`, keyBits: sym.keyBits };
}

const identityLabel = (): Buffer => Buffer.from(`${IDENTITY_LABEL}\0`, 'latin1');

// --- step 1: the seed -----------------------------------------------------------------

/** Step 1, sending side: a fresh seed and its encryption to the EK (TPM2B_ENCRYPTED_SECRET contents). */
export function encryptSeed(ek: TpmtPublic): { seed: Buffer; encryptedSecret: Buffer } {
  const p = protectionOf(ek);
  const ekKey = publicKeyOf(ek);
  if (ek.type === TPM_ALG.RSA) {
    const seed = randomBytes(p.digestBits / 8);
    const encryptedSecret = publicEncrypt({ key: ekKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: nodeHashName(p.nameAlg), oaepLabel: identityLabel() }, seed);
    return { seed, encryptedSecret };
  }
  if (ek.type !== TPM_ALG.ECC) throw new TrustlaunchError('MALFORMED_KEY', 'EK type unsupported');
  const curve = ECC_CURVES.get(ek.parameters.curveID);
  if (curve?.node === undefined) throw new TrustlaunchError('MALFORMED_KEY', 'EK curve unsupported');
  const eph = generateKeyPairSync('ec', { namedCurve: curve.node });
  const z = diffieHellman({ privateKey: eph.privateKey, publicKey: ekKey });
  const jwk = eph.publicKey.export({ format: 'jwk' });
  const point = { x: padTo(Buffer.from(jwk.x ?? '', 'base64url'), curve.size), y: padTo(Buffer.from(jwk.y ?? '', 'base64url'), curve.size) };
  const seed = kdfe(p.nameAlg, z, IDENTITY_LABEL, point.x, ek.unique.x, p.digestBits);
  const w = new TpmWriter(2 * curve.size + 4);
  writeTpmsEccPoint(w, point);
  return { seed, encryptedSecret: w.finish() };
}

/** Step 1, receiving side: the seed from TPM2B_ENCRYPTED_SECRET contents with the EK private key. */
export function decryptSeed(ek: TpmtPublic, ekPrivate: KeyObject, encryptedSecret: Uint8Array): Buffer {
  const p = protectionOf(ek);
  const refused = (why: string, cause?: unknown): TrustlaunchError =>
    new TrustlaunchError('CREDENTIAL_INTEGRITY', `the encrypted secret does not open with this EK: ${why}`, cause === undefined ? undefined : { cause });
  if (ek.type === TPM_ALG.RSA) {
    let seed: Buffer;
    try {
      seed = privateDecrypt({ key: ekPrivate, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: nodeHashName(p.nameAlg), oaepLabel: identityLabel() }, encryptedSecret);
    } catch (cause) {
      throw refused('RSA-OAEP decryption failed', cause);
    }
    if (seed.length > p.digestBits / 8) throw refused('seed longer than the nameAlg digest');
    return seed;
  }
  if (ek.type !== TPM_ALG.ECC) throw refused('EK type');
  const curve = ECC_CURVES.get(ek.parameters.curveID);
  if (curve?.jwk === undefined) throw refused('EK curve unsupported');
  const point = parseWhole(encryptedSecret, 'TPMS_ECC_POINT', (r: TpmReader) => readTpmsEccPoint(r));
  let ephPublic: KeyObject;
  try {
    ephPublic = createPublicKey({ key: { kty: 'EC', crv: curve.jwk, x: padTo(point.x, curve.size).toString('base64url'), y: padTo(point.y, curve.size).toString('base64url') }, format: 'jwk' });
  } catch (cause) {
    throw refused('the ephemeral point is not on the curve (TPM_RC_ECC_POINT)', cause);
  }
  const z = diffieHellman({ privateKey: ekPrivate, publicKey: ephPublic });
  return kdfe(p.nameAlg, z, IDENTITY_LABEL, point.x, ek.unique.x, p.digestBits);
}

// --- steps 2–5: protecting the credential with the seed --------------------------------

/** Steps 2–5: TPMS_ID_OBJECT contents for `credential`, bound to `objectName`. */
export function protectCredential(p: Protection, seed: Uint8Array, objectName: Uint8Array, credential: Uint8Array): Buffer {
  if (credential.length > p.digestBits / 8) throw new RangeError(`credential of ${credential.length} bytes exceeds the nameAlg digest size (TPM_RC_SIZE)`);
  const symKey = kdfa(p.nameAlg, seed, 'STORAGE', objectName, Buffer.alloc(0), p.keyBits);
  const plain = new TpmWriter(2 + credential.length);
  Tpm2bDigest.write(plain, credential);
  const c = createCipheriv(p.cipher, symKey, Buffer.alloc(16));
  const encIdentity = Buffer.concat([c.update(plain.finish()), c.final()]);
  const hmacKey = kdfa(p.nameAlg, seed, 'INTEGRITY', Buffer.alloc(0), Buffer.alloc(0), p.digestBits);
  const integrityHMAC = tpmHmac(p.nameAlg, hmacKey, encIdentity, objectName);
  return marshalTpmsIdObject({ integrityHMAC, encIdentity });
}

/** Steps 5 (checked first), 3 and 2 in reverse: the credential, or CREDENTIAL_INTEGRITY. */
export function unprotectCredential(p: Protection, seed: Uint8Array, objectName: Uint8Array, credentialBlob: Uint8Array): Buffer {
  const id = parseTpmsIdObject(credentialBlob);
  const hmacKey = kdfa(p.nameAlg, seed, 'INTEGRITY', Buffer.alloc(0), Buffer.alloc(0), p.digestBits);
  const expected = tpmHmac(p.nameAlg, hmacKey, id.encIdentity, objectName);
  if (id.integrityHMAC.length !== expected.length || !timingSafeEqual(id.integrityHMAC, expected)) {
    throw new TrustlaunchError('CREDENTIAL_INTEGRITY', 'the credential integrity HMAC does not match (TPM_RC_INTEGRITY): made for another object name or EK');
  }
  const symKey = kdfa(p.nameAlg, seed, 'STORAGE', objectName, Buffer.alloc(0), p.keyBits);
  const d = createDecipheriv(p.cipher, symKey, Buffer.alloc(16));
  const plain = Buffer.concat([d.update(id.encIdentity), d.final()]);
  const credential = parseWhole(plain, 'TPM2B_DIGEST (decrypted credential)', (r) => Tpm2bDigest.read(r, 'credential'));
  if (credential.length > p.digestBits / 8) throw new TrustlaunchError('TPM_PARSE_ERROR', 'decrypted credential exceeds the nameAlg digest size');
  return Buffer.from(credential);
}

// --- the two commands ------------------------------------------------------------------

/** TPM2_MakeCredential without a TPM: protects `secret` for the object named `objectName` under `ek`. */
export function makeCredential(ek: TpmtPublic, objectName: Uint8Array, secret: Uint8Array): Credential {
  const p = protectionOf(ek);
  const { seed, encryptedSecret } = encryptSeed(ek);
  return { credentialBlob: protectCredential(p, seed, objectName, secret), encryptedSecret };
}

/** TPM2_ActivateCredential's cryptography: recovers the secret with the EK private key. */
export function activateCredential(ek: TpmtPublic, ekPrivate: KeyObject, objectName: Uint8Array, credentialBlob: Uint8Array, encryptedSecret: Uint8Array): Buffer {
  const p = protectionOf(ek);
  const seed = decryptSeed(ek, ekPrivate, encryptedSecret);
  return unprotectCredential(p, seed, objectName, credentialBlob);
}
