// Transient objects and sessions with a scope: whatever a scope creates is flushed on
// every path out of it. A TPM without a resource manager (swtpm, /dev/tpm0) has three
// object slots and a few session slots; one leak per request would exhaust them.
import { TPM_ALG, TPM_RH } from '../constants.js';
import { hasAttributes } from '../structures/object-attributes.js';
import type { TpmtPublic } from '../structures/public.js';
import { EMPTY_AUTH, policyAuth, type Authorization } from './authorization.js';
import type { TpmClient } from './client.js';
import { flushContext } from './commands/objects.js';
import { policySecret, startPolicySession } from './commands/sessions.js';

/** Runs `fn`, then flushes `handle` whatever happened; `fn`'s error wins over a failed flush. */
export async function flushAfter<T>(tpm: TpmClient, handle: number, fn: () => Promise<T>): Promise<T> {
  let result: T;
  try {
    result = await fn();
  } catch (e) {
    await flushContext(tpm, handle).catch(() => undefined);
    throw e;
  }
  await flushContext(tpm, handle);
  return result;
}

/** Creates a transient with `make`, runs `fn` with it, flushes it. */
export async function withTransient<O extends { readonly handle: number }, T>(tpm: TpmClient, make: () => Promise<O>, fn: (object: O) => Promise<T>): Promise<T> {
  const object = await make();
  return flushAfter(tpm, object.handle, () => fn(object));
}

/** A policy session satisfied by PolicySecret(`authHandle`), for the duration of `fn`. */
export async function withPolicySecret<T>(
  tpm: TpmClient,
  hashAlg: number,
  fn: (auth: Authorization) => Promise<T>,
  options: { readonly authHandle?: number; readonly auth?: Authorization } = {},
): Promise<T> {
  const session = await startPolicySession(tpm, hashAlg);
  return flushAfter(tpm, session.handle, async () => {
    await policySecret(tpm, { authHandle: options.authHandle ?? TPM_RH.ENDORSEMENT, auth: options.auth ?? EMPTY_AUTH, session });
    return fn(policyAuth(session));
  });
}

/**
 * The USER-role authorization of an endorsement-hierarchy key such as an EK: its (empty)
 * authValue when userWithAuth is set (the high-range EK templates, e.g. swtpm's P-384 EK),
 * otherwise a PolicySecret(TPM_RH_ENDORSEMENT) session in the key's nameAlg (PolicyA of the
 * TCG EK Credential Profile: the low-range templates, e.g. the RSA-2048 EK).
 */
export function withEndorsementKeyAuth<T>(tpm: TpmClient, key: TpmtPublic, fn: (auth: Authorization) => Promise<T>, endorsementAuth: Authorization = EMPTY_AUTH): Promise<T> {
  if (hasAttributes(key.objectAttributes, 'userWithAuth')) return fn(EMPTY_AUTH);
  const hashAlg = key.nameAlg === TPM_ALG.NULL ? TPM_ALG.SHA256 : key.nameAlg;
  return withPolicySecret(tpm, hashAlg, fn, { authHandle: TPM_RH.ENDORSEMENT, auth: endorsementAuth });
}
