// Policy sessions: TPM2_StartAuthSession (Part 3 §11.1) for an unbound, unsalted policy
// session, TPM2_PolicySecret (§23.4) and TPM2_PolicyGetDigest (§23.19). Using an EK
// needs PolicySecret(TPM_RH_ENDORSEMENT) (TCG EK Credential Profile, PolicyA).
import { randomBytes } from 'node:crypto';
import { BOUNDS, TPM_ALG, TPM_HT, TPM_RH } from '../../constants.js';
import { hashSize } from '../../crypto/hash.js';
import { Tpm2bDigest } from '../../structures/sized.js';
import { EMPTY_AUTH, type Authorization, type PolicySession } from '../authorization.js';
import type { TpmClient } from '../client.js';
import { TPM_CC, TPM_SE } from '../constants.js';
import { readTpmtTicket } from '../structures/creation.js';

/** TPM2_StartAuthSession with tpmKey = bind = TPM_RH_NULL and symmetric = TPM_ALG_NULL; the caller flushes the session. */
export function startPolicySession(tpm: TpmClient, hashAlg: number = TPM_ALG.SHA256): Promise<PolicySession> {
  const nonceCaller = randomBytes(hashSize(hashAlg));
  return tpm.run({
    code: TPM_CC.StartAuthSession,
    handles: [TPM_RH.NULL, TPM_RH.NULL],
    parameters: (w) => {
      w.sized(nonceCaller, BOUNDS.DIGEST, 'TPM2B_NONCE');
      w.sized(new Uint8Array(0), BOUNDS.ENCRYPTED_SECRET, 'TPM2B_ENCRYPTED_SECRET');
      w.u8(TPM_SE.POLICY);
      w.u16(TPM_ALG.NULL); // TPMT_SYM_DEF: no parameter encryption
      w.u16(hashAlg);
    },
    responseHandles: 1,
    response: (r, handles) => {
      const handle = handles[0] ?? 0;
      if (handle >>> 24 !== TPM_HT.POLICY_SESSION) r.fail('sessionHandle', `0x${handle.toString(16)} is not a policy session handle`);
      return { handle, hashAlg, nonceTPM: r.sized('nonceTPM', BOUNDS.DIGEST) };
    },
  });
}

export interface PolicySecretOptions {
  /** The entity whose authorization is asserted (TPM_RH_ENDORSEMENT for an EK). */
  readonly authHandle?: number;
  readonly auth?: Authorization;
  readonly session: PolicySession;
}

/** TPM2_PolicySecret with no nonce, cpHash, policyRef or expiration: extends policyDigest with PolicySecret(authHandle). */
export async function policySecret(tpm: TpmClient, o: PolicySecretOptions): Promise<void> {
  await tpm.run({
    code: TPM_CC.PolicySecret,
    handles: [o.authHandle ?? TPM_RH.ENDORSEMENT, o.session.handle],
    authorizations: [o.auth ?? EMPTY_AUTH],
    parameters: (w) => {
      w.sized(new Uint8Array(0)); // nonceTPM
      w.sized(new Uint8Array(0)); // cpHashA
      w.sized(new Uint8Array(0)); // policyRef
      w.u32(0); // expiration
    },
    response: (r) => {
      r.sized('timeout', BOUNDS.DIGEST);
      readTpmtTicket(r, 'policyTicket');
    },
  });
}

/** TPM2_PolicyGetDigest: the session's current policyDigest. */
export function policyGetDigest(tpm: TpmClient, session: PolicySession): Promise<Buffer> {
  return tpm.run({
    code: TPM_CC.PolicyGetDigest,
    handles: [session.handle],
    response: (r) => Buffer.from(Tpm2bDigest.read(r, 'policyDigest')),
  });
}
