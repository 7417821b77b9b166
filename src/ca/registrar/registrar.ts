// Node registration (DESIGN.md §4.1) as two named pipelines.
//
// start (POST /v1/registrations): schema → token → node → ekCertificate → attestationKey
//   → challenge. The token is used up when the challenge is issued, so a token starts at
//   most one registration, whatever becomes of it.
// answer (POST /v1/registrations/{id}/answer): schema → registration → credential → quote
//   → eventLog → platform → activate. A pending registration takes one answer; any
//   refusal leaves no node behind.
// Every outcome, refusals included, is a row in the decisions table.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { TrustlaunchError, isTrustlaunchError, type ErrorCode } from '../../protocol/errors.js';
import { fromBase64url, toBase64url } from '../../protocol/base64url.js';
import { sha256Digest } from '../../protocol/digest.js';
import {
  CredentialAnswerSchema,
  RegistrationRequestSchema,
  describeIssues,
  type CredentialAnswer,
  type CredentialChallenge,
  type RegistrationRequest,
  type RegistrationResult,
} from '../../protocol/messages.js';
import { PLATFORM_PCRS } from '../../protocol/pcrs.js';
import { spkiDer } from '../../crypto/keys.js';
import { TCG_OID, parseCertificate, verifyChain, type Certificate } from '../../crypto/x509.js';
import { hashToken } from '../../http/auth.js';
import { transaction, type DatabaseHandle } from '../../store/index.js';
import { makeCredential } from '../../tpm/crypto/credential.js';
import { publicKeyOf } from '../../tpm/crypto/public-key.js';
import { parseTpmtPublic } from '../../tpm/structures/public.js';
import { registrableAttestationKey } from '../../tpm/quote/attestation-key.js';
import { verifyQuote } from '../../tpm/quote/verify.js';
import { eventsFromJson } from '../../tpm/eventlog/json.js';
import { checkReplay } from '../../tpm/eventlog/replay.js';
import { matchPlatform } from '../policy/platform.js';
import { decisionId, insertDecisions } from '../store/decisions.js';
import { findNode, insertNode } from '../store/nodes.js';
import { listPlatformReferences } from '../store/policy.js';
import { insertRegistration, takeRegistration, type PendingRegistration } from '../store/registrations.js';
import { consumeToken, findUsableToken } from '../store/tokens.js';
import type { CaSchema, DecisionOutcome } from '../store/schema.js';

export const REGISTRATION_START_STEPS = ['schema', 'token', 'node', 'ekCertificate', 'attestationKey', 'challenge'] as const;
export const REGISTRATION_ANSWER_STEPS = ['schema', 'registration', 'credential', 'quote', 'eventLog', 'platform', 'activate'] as const;

const SECRET_BYTES = 32;

export interface RegistrarOptions {
  readonly store: DatabaseHandle<CaSchema>;
  /** The EK trust anchors, read at each registration (a new file takes effect at once). */
  readonly endorsementRoots: () => Promise<readonly Certificate[]>;
  /** PEM chain, CA root last, that the node keeps in its device. */
  readonly caChain: readonly string[];
  readonly registrationTtlSeconds: number;
  /** Called after a node became active (policy caches reload). */
  readonly onRegistered: (nodeId: string) => Promise<void>;
}

function refuse(step: string, code: ErrorCode, message: string, cause?: unknown, detail?: Record<string, unknown>): never {
  throw new TrustlaunchError(code, `${step}: ${message}`, { detail: { step, ...detail }, ...(cause === undefined ? {} : { cause }) });
}

/** Runs a step; a TrustlaunchError from it is re-thrown naming the step (an inner pipeline's own step kept as `innerStep`). */
async function step<T>(name: string, fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (!isTrustlaunchError(e) || e.detail?.['step'] === name) throw e;
    const inner = e.detail?.['step'];
    return refuse(name, e.code, e.message, e, typeof inner === 'string' ? { innerStep: inner } : undefined);
  }
}

export class Registrar {
  readonly #opts: RegistrarOptions;

  constructor(opts: RegistrarOptions) {
    this.#opts = opts;
  }

  async #record(outcome: DecisionOutcome, nodeId: string | null, e?: unknown): Promise<void> {
    const failure = isTrustlaunchError(e) ? e : undefined;
    if (e !== undefined && failure === undefined) return; // a bug or an outage: nothing was decided
    const at = Date.now();
    await insertDecisions(this.#opts.store.db, [
      {
        id: decisionId(at),
        at,
        kind: 'registration',
        outcome,
        node_id: nodeId,
        vm_id: null,
        nonce: null,
        step: (failure?.detail?.['step'] as string | undefined) ?? null,
        code: failure?.code ?? null,
        message: failure?.message.slice(0, 512) ?? null,
        evidence_hash: null,
        receipt_jti: null,
      },
    ]).catch(() => undefined);
  }

  /** POST /v1/registrations: checks the request and answers with a credential challenge. */
  async start(input: unknown): Promise<CredentialChallenge> {
    let nodeId: string | null = null;
    try {
      const request = await step('schema', () => parseRequest(input));
      nodeId = request.nodeId;
      const challenge = await this.#start(request);
      await this.#record('challenged', nodeId);
      return challenge;
    } catch (e) {
      await this.#record('refused', nodeId, e);
      throw e;
    }
  }

  async #start(request: RegistrationRequest): Promise<CredentialChallenge> {
    const { db } = this.#opts.store;
    const now = Date.now();
    const token = await step('token', async () => {
      const t = await findUsableToken(db, hashToken(request.token), now);
      return t ?? refuse('token', 'TOKEN_INVALID', 'the enrollment token is unknown, already used or expired');
    });
    await step('node', async () => {
      if ((await findNode(db, request.nodeId)) !== undefined) refuse('node', 'NODE_ALREADY_REGISTERED', `node ${request.nodeId} is already registered`);
    });
    const ek = fromBase64url(request.ek.public);
    const ekCertificate = fromBase64url(request.ek.certificate);
    await step('ekCertificate', () => this.#checkEk(ek, ekCertificate));
    const akPublic = fromBase64url(request.ak.public);
    const akName = fromBase64url(request.ak.name);
    await step('attestationKey', () => registrableAttestationKey(akPublic, akName));
    return step('challenge', async () => {
      const secret = randomBytes(SECRET_BYTES);
      const credential = makeCredential(parseTpmtPublic(ek), akName, secret);
      const pending: PendingRegistration = {
        id: randomBytes(16).toString('base64url'),
        nodeId: request.nodeId,
        tokenId: token.id,
        ekPublic: ek,
        ekCertificate,
        akPublic,
        akName,
        secretHash: sha256Digest(secret),
        qualifyingData: randomBytes(32),
        createdAt: now,
        expiresAt: now + this.#opts.registrationTtlSeconds * 1000,
      };
      await transaction(db, async (trx) => {
        if (!(await consumeToken(trx, token.id, request.nodeId, now))) refuse('token', 'TOKEN_INVALID', 'the enrollment token was used meanwhile');
        await insertRegistration(trx, pending);
      });
      return {
        registrationId: pending.id,
        credentialBlob: toBase64url(credential.credentialBlob),
        encryptedSecret: toBase64url(credential.encryptedSecret),
        qualifyingData: toBase64url(pending.qualifyingData),
        expiresAt: Math.floor(pending.expiresAt / 1000),
      };
    });
  }

  /** The EK certificate chains to an endorsement root, is an EK certificate, and certifies this EK. */
  async #checkEk(ekPublic: Buffer, der: Buffer): Promise<void> {
    const cert = parseCertificate(der);
    const roots = await this.#opts.endorsementRoots();
    if (roots.length === 0) refuse('ekCertificate', 'EK_CERT_INVALID', 'the CA has no endorsement roots (add one with `trustlaunch ca endorsement add`)');
    try {
      await verifyChain(cert, { roots });
    } catch (e) {
      if (isTrustlaunchError(e, 'CERT_CHAIN_INVALID')) refuse('ekCertificate', 'EK_CERT_INVALID', `the EK certificate does not chain to an endorsement root (${typeof e.detail?.['reason'] === 'string' ? e.detail['reason'] : e.message})`, e);
      throw e;
    }
    if (!(cert.extendedKeyUsage ?? []).includes(TCG_OID.ekCertificate)) {
      refuse('ekCertificate', 'EK_CERT_INVALID', `the certificate's extended key usage lacks tcg-kp-EKCertificate (${TCG_OID.ekCertificate})`);
    }
    const ekKey = publicKeyOf(parseTpmtPublic(ekPublic));
    if (!spkiDer(cert.publicKey).equals(spkiDer(ekKey))) refuse('ekCertificate', 'EK_CERT_MISMATCH', 'the EK certificate certifies another key than the EK presented');
  }

  /** POST /v1/registrations/{id}/answer: checks the secret and the platform; the node becomes active. */
  async answer(registrationId: string, input: unknown): Promise<RegistrationResult> {
    let nodeId: string | null = null;
    try {
      const answer = await step('schema', () => parseAnswer(input));
      const pending = await step('registration', async () => {
        const p = await takeRegistration(this.#opts.store.db, registrationId, Date.now());
        return p ?? refuse('registration', 'REGISTRATION_NOT_FOUND', 'no pending registration with this id (unknown, answered already, or expired)');
      });
      nodeId = pending.nodeId;
      const result = await this.#answer(pending, answer);
      await this.#record('registered', nodeId);
      await this.#opts.onRegistered(pending.nodeId);
      return result;
    } catch (e) {
      await this.#record('refused', nodeId, e);
      throw e;
    }
  }

  async #answer(pending: PendingRegistration, answer: CredentialAnswer): Promise<RegistrationResult> {
    await step('credential', () => {
      const presented = Buffer.from(sha256Digest(fromBase64url(answer.secret)));
      const expected = Buffer.from(pending.secretHash);
      if (presented.length !== expected.length || !timingSafeEqual(presented, expected)) refuse('credential', 'CREDENTIAL_MISMATCH', 'the secret returned is not the one the credential protected');
    });
    const quote = await step('quote', () => {
      const q = verifyQuote(answer.quote, { akPublic: pending.akPublic, qualifyingData: pending.qualifyingData });
      const quoted = [...q.pcrs.keys()].sort((a, b) => a - b);
      if (quoted.join(',') !== PLATFORM_PCRS.join(',')) refuse('quote', 'PCR_SELECTION_MISMATCH', `the quote covers PCRs [${quoted.join(', ')}], not [${PLATFORM_PCRS.join(', ')}]`);
      return q;
    });
    const events = await step('eventLog', () => {
      const ev = eventsFromJson(answer.eventLog);
      checkReplay(ev, quote.pcrs);
      return ev;
    });
    const platform = await step('platform', async () => {
      const match = matchPlatform(await listPlatformReferences(this.#opts.store.db), events, quote.pcrs);
      return match.ok ? match.reference.name : refuse('platform', 'PLATFORM_NOT_TRUSTED', match.message);
    });
    await step('activate', () =>
      insertNode(this.#opts.store.db, {
        id: pending.nodeId,
        platform,
        registeredAt: Date.now(),
        ekPublic: pending.ekPublic,
        ekCertificate: pending.ekCertificate,
        akPublic: pending.akPublic,
        akName: pending.akName,
      }),
    );
    return { nodeId: pending.nodeId, status: 'active', caChain: [...this.#opts.caChain] };
  }
}

function parseRequest(input: unknown): RegistrationRequest {
  const r = RegistrationRequestSchema.safeParse(input);
  if (!r.success) throw new TrustlaunchError('MALFORMED_REQUEST', describeIssues(r.error));
  return r.data;
}

function parseAnswer(input: unknown): CredentialAnswer {
  const r = CredentialAnswerSchema.safeParse(input);
  if (!r.success) throw new TrustlaunchError('MALFORMED_REQUEST', describeIssues(r.error));
  return r.data;
}
