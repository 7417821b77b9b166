// The three fingerprints the project prints and pins (docs/crypto.md "Fingerprints"):
//  - OpenSSH `SHA256:<base64, no padding>` of the SSH key blob (what `ssh-keygen -lf` prints);
//  - `sha256:<hex>` of the SubjectPublicKeyInfo DER (the project's digest form);
//  - the RFC 7638 JWK thumbprint (base64url SHA-256 of the canonical JWK), used as `kid`.
import type { KeyObject } from 'node:crypto';
import { toBase64url } from '../protocol/base64url.js';
import { sha256, sha256Digest, type Digest } from '../protocol/digest.js';
import { exportPublicJwk, spkiDer } from './keys.js';
import { parseSshPublicKey, sshPublicKeyBlob } from './ssh-keys.js';

export type SshFingerprint = `SHA256:${string}`;

/** OpenSSH fingerprint of a key or of an OpenSSH public key line. */
export function sshFingerprint(key: KeyObject | string): SshFingerprint {
  const blob = typeof key === 'string' ? parseSshPublicKey(key).blob : sshPublicKeyBlob(key);
  return `SHA256:${sha256(blob).toString('base64').replace(/=+$/, '')}`;
}

/** `sha256:<hex>` of the key's SubjectPublicKeyInfo DER (`openssl pkey -pubout -outform DER | sha256sum`). */
export function spkiFingerprint(key: KeyObject): Digest {
  return sha256Digest(spkiDer(key));
}

/**
 * RFC 7638 §3: SHA-256 over the JSON of the required members only, in lexicographic
 * order, without whitespace; base64url without padding.
 */
export function jwkThumbprint(key: KeyObject): string {
  const jwk = exportPublicJwk(key);
  let canonical: string;
  switch (jwk.kty) {
    case 'OKP':
      canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x });
      break;
    case 'EC':
      canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y });
      break;
    case 'RSA':
      canonical = JSON.stringify({ e: jwk.e, kty: jwk.kty, n: jwk.n });
      break;
  }
  return toBase64url(sha256(canonical));
}
