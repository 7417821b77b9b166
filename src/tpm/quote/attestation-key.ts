// The verifier's view of an attestation key: its public area parsed once, the node KeyObject
// built once, and the signing scheme a quote must carry. Cached by the public area's bytes,
// because a CA verifies many quotes from the same few AKs and key import costs as much as
// a signature check.
import type { KeyObject } from 'node:crypto';
import { TrustlaunchError } from '../../protocol/errors.js';
import { TPM_ALG, TPM_ECC_CURVE } from '../constants.js';
import { objectName } from '../crypto/name.js';
import { publicKeyOf } from '../crypto/public-key.js';
import { hasAttributes } from '../structures/object-attributes.js';
import { parseTpmtPublic, type TpmtPublic } from '../structures/public.js';

export interface VerifierKey {
  readonly public: TpmtPublic;
  readonly key: KeyObject;
  /** The TPMT_SIGNATURE sigAlg and hash every quote by this key carries. */
  readonly scheme: number;
  readonly hashAlg: number;
}

const SIGNING_SCHEMES = new Set<number>([TPM_ALG.ECDSA, TPM_ALG.RSASSA, TPM_ALG.RSAPSS]);

/**
 * Parses and checks an AK public area: a restricted signing key with a fixed ECDSA, RSASSA
 * or RSAPSS scheme (a restricted signing key must name its scheme, Part 2 §12.2.3.5).
 */
export function verifierKey(akPublic: Uint8Array): VerifierKey {
  const pub = parseTpmtPublic(akPublic);
  if (pub.type !== TPM_ALG.RSA && pub.type !== TPM_ALG.ECC) throw new TrustlaunchError('AK_ATTRIBUTES_INVALID', 'the AK is not an RSA or ECC key');
  if (!hasAttributes(pub.objectAttributes, 'sign', 'restricted') || hasAttributes(pub.objectAttributes, 'decrypt')) {
    throw new TrustlaunchError('AK_ATTRIBUTES_INVALID', 'the AK is not a restricted signing-only key');
  }
  const { scheme, hashAlg } = pub.parameters.scheme;
  if (!SIGNING_SCHEMES.has(scheme) || hashAlg === undefined) throw new TrustlaunchError('AK_ATTRIBUTES_INVALID', 'the AK has no fixed signing scheme');
  if ((pub.type === TPM_ALG.ECC) !== (scheme === TPM_ALG.ECDSA)) throw new TrustlaunchError('AK_ATTRIBUTES_INVALID', 'the AK scheme does not fit its key type');
  return { public: pub, key: publicKeyOf(pub), scheme, hashAlg };
}

const CACHE_MAX = 1024;
const cache = new Map<string, VerifierKey>();

/** verifierKey with a bounded cache (oldest entry evicted first); failures are not cached. */
export function cachedVerifierKey(akPublic: Uint8Array): VerifierKey {
  const id = Buffer.from(akPublic.buffer, akPublic.byteOffset, akPublic.byteLength).toString('latin1');
  const hit = cache.get(id);
  if (hit !== undefined) return hit;
  const fresh = verifierKey(akPublic);
  if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value as string);
  cache.set(id, fresh);
  return fresh;
}

const ALLOWED_CURVES = new Set<number>([TPM_ECC_CURVE.NIST_P256, TPM_ECC_CURVE.NIST_P384]);

/**
 * What a registrar checks of a presented AK (DESIGN.md §4.1): the public area parses, it is
 * a restricted signing-only key that never leaves its TPM (fixedTPM, fixedParent,
 * sensitiveDataOrigin) with a SHA-256+ nameAlg, RSA >= 2048 or ECC P-256/P-384, a fixed
 * scheme (AK_ATTRIBUTES_INVALID otherwise), and the presented Name is its Name
 * (AK_NAME_MISMATCH). Credential activation then proves it lives in the EK's TPM.
 */
export function registrableAttestationKey(akPublic: Uint8Array, akName: Uint8Array): VerifierKey {
  const vk = verifierKey(akPublic);
  const pub = vk.public;
  if (!hasAttributes(pub.objectAttributes, 'fixedTPM', 'fixedParent', 'sensitiveDataOrigin')) {
    throw new TrustlaunchError('AK_ATTRIBUTES_INVALID', 'the AK is not fixedTPM, fixedParent and sensitiveDataOrigin');
  }
  if (pub.nameAlg !== TPM_ALG.SHA256 && pub.nameAlg !== TPM_ALG.SHA384 && pub.nameAlg !== TPM_ALG.SHA512) {
    throw new TrustlaunchError('AK_ATTRIBUTES_INVALID', 'the AK nameAlg is not SHA-256, SHA-384 or SHA-512');
  }
  const strong = pub.type === TPM_ALG.RSA ? pub.parameters.keyBits >= 2048 : pub.type === TPM_ALG.ECC && ALLOWED_CURVES.has(pub.parameters.curveID);
  if (!strong) throw new TrustlaunchError('AK_ATTRIBUTES_INVALID', 'the AK is not RSA >= 2048 or ECC P-256/P-384');
  if (!objectName(akPublic).equals(akName)) throw new TrustlaunchError('AK_NAME_MISMATCH', 'the AK name is not nameAlg ‖ H(TPMT_PUBLIC)');
  return vk;
}
