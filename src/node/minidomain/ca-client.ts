// The mini-domain's client for the CA's API (DESIGN.md §4.1, §4.2 step 6). TLS trusts
// exactly one certificate: the CA root read from the device's NV (or, for the very first
// registration only, the bootstrap certificate the operator gave). Answers are parsed
// against their schemas; transport trouble is CA_UNREACHABLE so the caller can retry.
import { z } from 'zod';
import type { Dispatcher } from 'undici';
import { pinnedCaAgent } from '../../crypto/tls.js';
import type { Certificate } from '../../crypto/x509.js';
import { JsonClient } from '../../http/client.js';
import { TrustlaunchError } from '../../protocol/errors.js';
import {
  CredentialChallengeSchema,
  EAR_STATUSES,
  RegistrationResultSchema,
  describeIssues,
  type CredentialAnswer,
  type CredentialChallenge,
  type Evidence,
  type RegistrationRequest,
  type RegistrationResult,
} from '../../protocol/messages.js';

/** What the CA answers to evidence (and, without `status`, what GET /v1/receipts/{nonce} returns). */
export const EvidenceAnswerSchema = z.object({
  receipt: z.string().min(1).max(16_384),
  status: z.enum(EAR_STATUSES).optional(),
  hostCertificate: z.string().min(1).max(16_384).optional(),
});
export type EvidenceAnswer = z.infer<typeof EvidenceAnswerSchema>;

export interface CaClientOptions {
  readonly url: string;
  /** The only certificate the CA's TLS chain may lead to. */
  readonly trust: Certificate;
  readonly timeoutMs?: number;
}

function parse<S extends z.ZodType>(schema: S, value: unknown, what: string): z.infer<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw new TrustlaunchError('MALFORMED_REQUEST', `the CA's answer to ${what} does not match its schema: ${describeIssues(r.error)}`);
  return r.data;
}

export class CaClient {
  readonly #agent: Dispatcher;
  readonly #client: JsonClient;

  constructor(opts: CaClientOptions) {
    this.#agent = pinnedCaAgent({ ca: opts.trust });
    this.#client = new JsonClient({ baseUrl: opts.url, dispatcher: this.#agent, timeoutMs: opts.timeoutMs ?? 15_000, unreachableCode: 'CA_UNREACHABLE' });
  }

  async register(request: RegistrationRequest, signal?: AbortSignal): Promise<CredentialChallenge> {
    return parse(CredentialChallengeSchema, await this.#client.call('POST', '/v1/registrations', { body: request, ...opt(signal) }), 'the registration request');
  }

  async answer(registrationId: string, answer: CredentialAnswer, signal?: AbortSignal): Promise<RegistrationResult> {
    const path = `/v1/registrations/${encodeURIComponent(registrationId)}/answer`;
    return parse(RegistrationResultSchema, await this.#client.call('POST', path, { body: answer, ...opt(signal) }), 'the credential answer');
  }

  /** Sends evidence. NONCE_REUSED (HTTP 409) means the CA already judged it: fetch the receipt. */
  async evidence(evidence: Evidence, signal?: AbortSignal): Promise<EvidenceAnswer> {
    return parse(EvidenceAnswerSchema, await this.#client.call('POST', '/v1/evidence', { body: evidence, ...opt(signal) }), 'the evidence');
  }

  async receipt(nonce: string, signal?: AbortSignal): Promise<EvidenceAnswer> {
    return parse(EvidenceAnswerSchema, await this.#client.call('GET', `/v1/receipts/${encodeURIComponent(nonce)}`, opt(signal)), 'the receipt lookup');
  }

  /** Any authenticated round trip: proves the CA's TLS identity chains to the pinned certificate. */
  async keys(signal?: AbortSignal): Promise<unknown> {
    return this.#client.call('GET', '/v1/keys', opt(signal));
  }

  async close(): Promise<void> {
    await this.#client.close();
    await this.#agent.close();
  }
}

function opt(signal: AbortSignal | undefined): { signal?: AbortSignal } {
  return signal === undefined ? {} : { signal };
}
