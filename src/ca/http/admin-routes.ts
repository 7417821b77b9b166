// Admin endpoints (docs/ca.md "Endpoints"), all behind `Authorization: Bearer <admin
// token>`: checked in onRequest, before any body is read. A missing or malformed header is
// 401 UNAUTHENTICATED, any other token 403 FORBIDDEN; either way nothing changes.
import { randomBytes } from 'node:crypto';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { HttpServer } from '../../http/server.js';
import { ErrorBodySchema } from '../../http/server.js';
import { bearerToken, generateToken, hashToken, tokenMatches } from '../../http/auth.js';
import { TrustlaunchError } from '../../protocol/errors.js';
import type { DatabaseHandle } from '../../store/index.js';
import type { PolicyCache } from '../policy/cache.js';
import { listDecisions } from '../store/decisions.js';
import { getNode, listNodes, revokeNode } from '../store/nodes.js';
import { addAllowlistEntry, addPlatformReference, listAllowlist, listPlatformReferences, removePlatformReference, revokeAllowlistEntry } from '../store/policy.js';
import { insertToken, listTokens } from '../store/tokens.js';
import type { CaSchema } from '../store/schema.js';
import {
  AllowlistAddSchema,
  AllowlistViewSchema,
  DecisionPageSchema,
  DecisionQuerySchema,
  NameParamsSchema,
  NodeParamsSchema,
  NodeRevokeSchema,
  NodeViewSchema,
  PlatformAddSchema,
  PlatformViewSchema,
  TokenCreateSchema,
  TokenCreatedSchema,
  TokenViewSchema,
} from './schemas.js';
import { allowlistView, decisionView, decodeCursor, encodeCursor, iso, nodeView, platformView, tokenView } from './views.js';

export interface AdminRouteDeps {
  readonly adminTokenHash: string;
  readonly store: DatabaseHandle<CaSchema>;
  readonly policy: PolicyCache;
  readonly enrollmentTokenTtlSeconds: number;
}

const errors = { 400: ErrorBodySchema, 401: ErrorBodySchema, 403: ErrorBodySchema, 404: ErrorBodySchema, 409: ErrorBodySchema };
const security = [{ bearer: [] }];

export function registerAdminRoutes(app: HttpServer, deps: AdminRouteDeps): void {
  const { db } = deps.store;
  void app.register((scope, _opts, registered) => {
    const admin = scope.withTypeProvider<ZodTypeProvider>();
    admin.addHook('onRequest', (request, _reply, next) => {
      const token = bearerToken(request);
      if (!tokenMatches(token, deps.adminTokenHash)) throw new TrustlaunchError('FORBIDDEN', 'this token is not the admin credential');
      next();
    });

    admin.post(
      '/v1/admin/tokens',
      { schema: { summary: 'Create a one-time enrollment token (shown once)', security, body: TokenCreateSchema, response: { 201: TokenCreatedSchema, ...errors } } },
      async (req, reply) => {
        const token = generateToken('enr');
        const now = Date.now();
        const expiresAt = now + (req.body.ttlSeconds ?? deps.enrollmentTokenTtlSeconds) * 1000;
        const id = randomBytes(6).toString('hex');
        await insertToken(db, { id, tokenHash: hashToken(token), createdAt: now, expiresAt });
        return reply.code(201).send({ id, token, expiresAt: iso(expiresAt) });
      },
    );
    admin.get('/v1/admin/tokens', { schema: { summary: 'Enrollment tokens (never the secrets)', security, response: { 200: z.strictObject({ tokens: z.array(TokenViewSchema) }), ...errors } } }, async () => ({
      tokens: (await listTokens(db)).map(tokenView),
    }));

    admin.post(
      '/v1/admin/allowlist',
      { schema: { summary: 'Allow a kernel (optionally pinning initrd and cmdline)', security, body: AllowlistAddSchema, response: { 201: AllowlistViewSchema, ...errors } } },
      async (req, reply) => {
        const b = req.body;
        const entry = {
          name: b.name,
          kernel: b.kernel,
          ...(b.initrd === undefined ? {} : { initrd: b.initrd }),
          ...(b.cmdline === undefined ? {} : { cmdline: b.cmdline }),
          createdAt: Date.now(),
          ...(b.expiresAt === undefined ? {} : { expiresAt: Date.parse(b.expiresAt) }),
        };
        await addAllowlistEntry(db, entry);
        await deps.policy.changed();
        return reply.code(201).send(allowlistView(entry));
      },
    );
    admin.get('/v1/admin/allowlist', { schema: { summary: 'The kernel allowlist', security, response: { 200: z.strictObject({ entries: z.array(AllowlistViewSchema) }), ...errors } } }, async () => ({
      entries: (await listAllowlist(db)).map(allowlistView),
    }));
    admin.post(
      '/v1/admin/allowlist/:name/revoke',
      { schema: { summary: 'Revoke an allowlist entry (from then on its kernel is KERNEL_REVOKED)', security, params: NameParamsSchema, response: { 200: AllowlistViewSchema, ...errors } } },
      async (req) => {
        const entry = await revokeAllowlistEntry(db, req.params.name, Date.now());
        await deps.policy.changed();
        return allowlistView(entry);
      },
    );

    admin.post(
      '/v1/admin/platforms',
      { schema: { summary: 'Add platform reference values', security, body: PlatformAddSchema, response: { 201: PlatformViewSchema, ...errors } } },
      async (req, reply) => {
        const b = req.body;
        const reference = {
          name: b.name,
          hypervisor: b.hypervisor,
          minidomain: b.minidomain,
          ...(b.firmware === undefined ? {} : { firmware: b.firmware }),
          ...(b.bootConfig === undefined ? {} : { bootConfig: b.bootConfig }),
          ...(b.pcrs === undefined ? {} : { pcrs: b.pcrs }),
          createdAt: Date.now(),
        };
        await addPlatformReference(db, reference);
        await deps.policy.changed();
        return reply.code(201).send(platformView(reference));
      },
    );
    admin.get('/v1/admin/platforms', { schema: { summary: 'Platform reference values', security, response: { 200: z.strictObject({ platforms: z.array(PlatformViewSchema) }), ...errors } } }, async () => ({
      platforms: (await listPlatformReferences(db)).map(platformView),
    }));
    admin.delete(
      '/v1/admin/platforms/:name',
      { schema: { summary: 'Remove platform reference values', security, params: NameParamsSchema, response: { 200: z.strictObject({ removed: z.string() }), ...errors } } },
      async (req) => {
        await removePlatformReference(db, req.params.name);
        await deps.policy.changed();
        return { removed: req.params.name };
      },
    );

    admin.get('/v1/admin/nodes', { schema: { summary: 'Registered nodes', security, response: { 200: z.strictObject({ nodes: z.array(NodeViewSchema) }), ...errors } } }, async () => ({
      nodes: (await listNodes(db)).map(nodeView),
    }));
    admin.get('/v1/admin/nodes/:id', { schema: { summary: 'One node', security, params: NodeParamsSchema, response: { 200: NodeViewSchema, ...errors } } }, async (req) => nodeView(await getNode(db, req.params.id)));
    admin.post(
      '/v1/admin/nodes/:id/revoke',
      { schema: { summary: "Revoke a node: its evidence is refused from then on (NODE_REVOKED)", security, params: NodeParamsSchema, body: NodeRevokeSchema.optional(), response: { 200: NodeViewSchema, ...errors } } },
      async (req) => {
        const node = await revokeNode(db, req.params.id, Date.now(), req.body?.reason);
        await deps.policy.changed();
        return nodeView(node);
      },
    );

    admin.get(
      '/v1/admin/decisions',
      { schema: { summary: 'The decisions log, oldest first, paginated', security, querystring: DecisionQuerySchema, response: { 200: DecisionPageSchema, ...errors } } },
      async (req) => {
        const q = req.query;
        const after = q.cursor === undefined ? undefined : decodeCursor(q.cursor);
        if (q.cursor !== undefined && after === undefined) throw new TrustlaunchError('MALFORMED_REQUEST', 'cursor: not a cursor this CA returned');
        const page = await listDecisions(db, {
          limit: q.limit ?? 100,
          ...(q.node === undefined ? {} : { node: q.node }),
          ...(q.since === undefined ? {} : { since: Date.parse(q.since) }),
          ...(after === undefined ? {} : { after }),
        });
        return { decisions: page.decisions.map(decisionView), ...(page.next === undefined ? {} : { nextCursor: encodeCursor(page.next) }) };
      },
    );
    registered();
  });
}

