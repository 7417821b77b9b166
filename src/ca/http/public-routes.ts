// The CA's public endpoints: registration, evidence, receipts by nonce, keys.
import type { z } from 'zod';
import { ErrorBodySchema, type HttpServer } from '../../http/server.js';
import { CredentialAnswerSchema, CredentialChallengeSchema, EvidenceSchema, RegistrationRequestSchema, RegistrationResultSchema } from '../../protocol/messages.js';
import { TrustlaunchError } from '../../protocol/errors.js';
import type { CaIdentity } from '../identity.js';
import type { Registrar } from '../registrar/registrar.js';
import type { ReceiptWaiters } from '../receipts/waiters.js';
import {
  EvidenceResponseSchema,
  KeysResponseSchema,
  NonceParamsSchema,
  ReceiptQuerySchema,
  ReceiptResponseSchema,
  RegistrationParamsSchema,
} from './schemas.js';

/** Evidence bodies: an event log of up to 1024 events fits easily; nothing legitimate is near. */
export const EVIDENCE_BODY_LIMIT = 1 << 20;

export interface PublicRouteDeps {
  readonly identity: CaIdentity;
  readonly registrar: Registrar;
  readonly waiters: ReceiptWaiters;
  /** Judges and commits one evidence body (the raw request text). */
  readonly evidence: (body: string) => Promise<z.infer<typeof EvidenceResponseSchema>>;
}

const errors = { 400: ErrorBodySchema, 403: ErrorBodySchema, 404: ErrorBodySchema, 409: ErrorBodySchema, 413: ErrorBodySchema };

export function registerPublicRoutes(app: HttpServer, deps: PublicRouteDeps): void {
  app.get('/v1/keys', { schema: { summary: "The CA's identity: receipt keys (JWKS), SSH CA key, TLS root", response: { 200: KeysResponseSchema } } }, () => deps.identity);

  app.post(
    '/v1/registrations',
    { schema: { summary: 'Start a node registration (DESIGN.md §4.1)', body: RegistrationRequestSchema, response: { 201: CredentialChallengeSchema, ...errors } } },
    async (req, reply) => reply.code(201).send(await deps.registrar.start(req.body)),
  );

  app.post(
    '/v1/registrations/:id/answer',
    { schema: { summary: 'Answer a credential challenge', params: RegistrationParamsSchema, body: CredentialAnswerSchema, response: { 200: RegistrationResultSchema, ...errors } } },
    async (req) => deps.registrar.answer(req.params.id, req.body),
  );

  app.get(
    '/v1/receipts/:nonce',
    { schema: { summary: 'The receipt for a nonce; ?wait=SECONDS long-polls (at most 60)', params: NonceParamsSchema, querystring: ReceiptQuerySchema, response: { 200: ReceiptResponseSchema, ...errors } } },
    async (req) => {
      const abort = new AbortController();
      req.raw.once('close', () => abort.abort());
      const found = await deps.waiters.wait(req.params.nonce, (req.query.wait ?? 0) * 1000, abort.signal);
      if (found === undefined) throw new TrustlaunchError('NOT_FOUND', 'no receipt for this nonce (yet)');
      return found.hostCertificate === undefined ? { receipt: found.receipt } : { receipt: found.receipt, hostCertificate: found.hostCertificate };
    },
  );

  // Evidence is judged from the raw text (the pipeline's `schema` step parses it, in a
  // judge thread), so this scope keeps JSON bodies as strings and skips route validation.
  void app.register((scope, _opts, registered) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: EVIDENCE_BODY_LIMIT }, (_req, body, done) => done(null, body));
    scope.post(
      '/v1/evidence',
      {
        bodyLimit: EVIDENCE_BODY_LIMIT,
        validatorCompiler: () => (data: unknown) => ({ value: data }),
        // The CA builds this response itself from what it stored: no need to re-validate it.
        serializerCompiler: () => (data: unknown) => JSON.stringify(data),
        schema: { summary: 'Judge launch evidence (authenticated by the AK signature); stores and returns the receipt', body: EvidenceSchema, response: { 200: EvidenceResponseSchema, ...errors } },
      },
      (req) => deps.evidence(req.body as string),
    );
    registered();
  });
}
