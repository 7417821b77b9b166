// First boot: node registration with the CA (DESIGN.md §4.1), as named steps:
//   endorsement → attestationKey → request → activateCredential → platformQuote →
//   answer → caRoot → confirmPin → writeNv
// The CA's root certificate from the result is pinned only after a round trip proves the
// CA's TLS identity chains to it, then written to device NV (CA certificate first, the
// registration record last: the record is what makes a registration complete).
import { parseCertificate, type Certificate } from '../../crypto/x509.js';
import { toBase64url, fromBase64url } from '../../protocol/base64url.js';
import { TrustlaunchError } from '../../protocol/errors.js';
import type { AttestationKey, AuthDevice, EkAlgorithm, Endorsement } from '../../tpm/auth-device.js';
import { eventsToJson } from '../../tpm/eventlog/json.js';
import type { TcgEvent } from '../../tpm/eventlog/event.js';
import { CaClient } from './ca-client.js';
import { platformQuote } from './evidence.js';
import { writeCaCertificate, writeRegistration, type RegistrationRecord } from './nv-records.js';

/** EKs in order of preference (the first the device has is used). */
const EK_PREFERENCE: readonly EkAlgorithm[] = ['ecc-p256', 'rsa2048', 'ecc-p384'];

export interface RegistrationContext {
  readonly nodeId: string;
  readonly device: AuthDevice;
  /** The enrollment token (a secret, from the operator through dom0). */
  readonly token: string;
  readonly caUrl: string;
  /** The certificate TLS trusts for this first contact (from the operator; never used again). */
  readonly bootstrap: Certificate;
  readonly eventLog: () => TcgEvent[];
  readonly signal?: AbortSignal;
  /** Runs each named step (the agent times steps for its hang detection). */
  readonly step?: <T>(name: string, fn: () => Promise<T>) => Promise<T>;
}

export interface Registered {
  readonly record: RegistrationRecord;
  readonly caCertificate: Certificate;
  readonly ak: AttestationKey;
}

export function pickEndorsement(endorsements: readonly Endorsement[]): Endorsement {
  for (const algorithm of EK_PREFERENCE) {
    const ek = endorsements.find((e) => e.algorithm === algorithm);
    if (ek !== undefined) return ek;
  }
  throw new TrustlaunchError('DEVICE_NOT_READY', 'the auth device carries no endorsement key');
}

export async function registerNode(ctx: RegistrationContext): Promise<Registered> {
  const step = ctx.step ?? (<T>(_name: string, fn: () => Promise<T>) => fn());
  const signal = ctx.signal === undefined ? {} : { signal: ctx.signal };
  const { device } = ctx;
  const ek = await step('endorsement', async () => pickEndorsement(await device.endorsements()));
  const ak = await step('attestationKey', () => device.ensureAttestationKey(ek.algorithm));
  const bootstrapClient = new CaClient({ url: ctx.caUrl, trust: ctx.bootstrap });
  let result;
  try {
    const challenge = await step('request', () =>
      bootstrapClient.register(
        { token: ctx.token, nodeId: ctx.nodeId, ek: { public: toBase64url(ek.public), certificate: toBase64url(ek.certificate) }, ak: { public: toBase64url(ak.public), name: toBase64url(ak.name) } },
        ctx.signal,
      ),
    );
    const secret = await step('activateCredential', () => device.activateCredential(ak, ek.algorithm, fromBase64url(challenge.credentialBlob), fromBase64url(challenge.encryptedSecret)));
    const quote = await step('platformQuote', () => platformQuote(device, ak, fromBase64url(challenge.qualifyingData)));
    result = await step('answer', () => bootstrapClient.answer(challenge.registrationId, { secret: toBase64url(secret), quote, eventLog: eventsToJson(ctx.eventLog()) }, ctx.signal));
  } finally {
    await bootstrapClient.close();
  }
  if (result.nodeId !== ctx.nodeId) throw new TrustlaunchError('CONFLICT', `the CA registered node ${result.nodeId}, not ${ctx.nodeId}`);
  const caCertificate = caRoot(result.caChain);
  // Pin the root only once the CA's own TLS identity is shown to chain to it.
  const pinned = new CaClient({ url: ctx.caUrl, trust: caCertificate });
  try {
    await step('confirmPin', () => pinned.keys(signal.signal));
  } finally {
    await pinned.close();
  }
  const record: RegistrationRecord = { v: 1, nodeId: ctx.nodeId, ek: ek.algorithm, akHandle: ak.handle, caCertificate: caCertificate.sha256Fingerprint };
  await step('writeNv', async () => {
    await writeCaCertificate(device, caCertificate);
    await writeRegistration(device, record);
  });
  return { record, caCertificate, ak };
}

/** The last certificate of the chain: the CA's root, which must be a CA certificate. */
function caRoot(chain: readonly string[]): Certificate {
  const last = chain.at(-1);
  if (last === undefined) throw new TrustlaunchError('MALFORMED_REQUEST', 'the CA returned an empty certificate chain');
  const root = parseCertificate(last);
  if (root.basicConstraints?.ca !== true) throw new TrustlaunchError('MALFORMED_CERTIFICATE', 'the last certificate of the CA chain is not a CA certificate');
  return root;
}
