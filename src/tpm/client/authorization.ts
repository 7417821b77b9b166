// Command authorizations (Part 1 §19; TPMS_AUTH_COMMAND / TPMS_AUTH_RESPONSE, Part 2
// §10.13). Two kinds, both without an HMAC key:
// - password (TPM_RS_PW, Part 1 §19.8.4): the authValue travels in the hmac field;
// - policy session, unbound and unsalted (Part 1 §19.6.13: with no session key and no
//   PolicyAuthValue, the HMAC key is empty and the TPM accepts an empty hmac). This is how
//   an EK, whose authPolicy is PolicySecret(TPM_RH_ENDORSEMENT), is used.
import { randomBytes } from 'node:crypto';
import { BOUNDS } from '../constants.js';
import { hashSize } from '../crypto/hash.js';
import type { TpmReader } from '../marshal/reader.js';
import type { TpmWriter } from '../marshal/writer.js';
import { TPMA_SESSION, TPM_RS_PW } from './constants.js';

/** A policy session this client started (StartAuthSession with TPM_SE_POLICY). */
export interface PolicySession {
  readonly handle: number;
  /** The session's authHash: the nonce size, and the policy digest algorithm. */
  readonly hashAlg: number;
  /** The TPM's latest nonce (TPM2_PolicySecret binds to it when an expiration is asked). */
  nonceTPM: Uint8Array;
}

export type Authorization =
  | { readonly kind: 'password'; readonly value: Uint8Array }
  | { readonly kind: 'policy'; readonly session: PolicySession };

/** The password authorization; the empty password is what hierarchies and tpm2-tools' keys have by default. */
export function passwordAuth(value: Uint8Array | string = ''): Authorization {
  const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  if (bytes.length > BOUNDS.DIGEST) throw new RangeError(`an authValue has at most ${BOUNDS.DIGEST} bytes`);
  return { kind: 'password', value: bytes };
}

export const EMPTY_AUTH: Authorization = passwordAuth();

export function policyAuth(session: PolicySession): Authorization {
  return { kind: 'policy', session };
}

/** TPMS_AUTH_COMMAND (Part 2 §10.13.2). The session stays open (continueSession): its owner flushes it. */
export function writeAuthCommand(w: TpmWriter, auth: Authorization): void {
  if (auth.kind === 'password') {
    w.u32(TPM_RS_PW).sized(new Uint8Array(0)).u8(TPMA_SESSION.continueSession).sized(auth.value, BOUNDS.DIGEST, 'TPM2B_AUTH');
    return;
  }
  // A fresh nonceCaller of the session's digest size on every use (Part 1 §19.6.10).
  w.u32(auth.session.handle).sized(randomBytes(hashSize(auth.session.hashAlg))).u8(TPMA_SESSION.continueSession).sized(new Uint8Array(0));
}

/** TPMS_AUTH_RESPONSE (Part 2 §10.13.3). */
export interface AuthResponse {
  readonly nonceTPM: Uint8Array;
  readonly sessionAttributes: number;
  readonly hmac: Uint8Array;
}

export function readAuthResponse(r: TpmReader, field: string): AuthResponse {
  return {
    nonceTPM: r.sized(`${field}.nonce`, BOUNDS.DIGEST),
    sessionAttributes: r.u8(`${field}.sessionAttributes`),
    hmac: r.sized(`${field}.hmac`, BOUNDS.DIGEST),
  };
}
