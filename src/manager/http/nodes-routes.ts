// /v1/nodes: join (authorised by a one-time join token in the body), and the inventory
// (admin).
import { z } from 'zod';
import type { HttpServer } from '../../http/server.js';
import { IdSchema } from '../../protocol/messages.js';
import { NodeJoinRequestSchema } from '../nodes.js';
import type { ManagerService } from '../service.js';
import { adminOf } from './auth.js';
import { NodeViewSchema, nodeView } from './views.js';

const bearer = [{ bearer: [] }];

const NodeVmSchema = z.strictObject({ vmId: z.string(), name: z.string(), state: z.string(), memoryMiB: z.number() });

export function registerNodeRoutes(app: HttpServer, service: ManagerService): void {
  app.post(
    '/v1/nodes/tokens',
    {
      schema: {
        tags: ['nodes'],
        security: bearer,
        body: z.strictObject({ ttlSeconds: z.number().int().min(1).max(7 * 24 * 3600).optional() }).optional(),
        response: { 201: z.strictObject({ token: z.string(), expiresAt: z.string() }) },
      },
    },
    async (request, reply) => {
      await adminOf(service, request);
      const ttl = request.body?.ttlSeconds;
      const { token, expiresAt } = await service.createJoinToken(ttl === undefined ? undefined : ttl * 1000);
      return reply.code(201).send({ token, expiresAt: new Date(expiresAt).toISOString() });
    },
  );

  app.post(
    '/v1/nodes/join',
    { schema: { tags: ['nodes'], description: 'A node joins with a one-time join token.', body: NodeJoinRequestSchema, response: { 201: NodeViewSchema } } },
    async (request, reply) => reply.code(201).send(nodeView(await service.joinNode(request.body))),
  );

  app.get('/v1/nodes', { schema: { tags: ['nodes'], security: bearer, response: { 200: z.strictObject({ nodes: z.array(NodeViewSchema) }) } } }, async (request) => {
    await adminOf(service, request);
    return { nodes: (await service.nodeLoads()).map(nodeView) };
  });

  app.get(
    '/v1/nodes/:id',
    {
      schema: {
        tags: ['nodes'],
        security: bearer,
        params: z.strictObject({ id: IdSchema }),
        response: { 200: z.strictObject({ node: NodeViewSchema, vms: z.array(NodeVmSchema) }) },
      },
    },
    async (request) => {
      await adminOf(service, request);
      const { node, vms } = await service.nodeWithVms(request.params.id);
      return { node: nodeView(node), vms: vms.map((v) => ({ vmId: v.id, name: v.name, state: v.state, memoryMiB: v.memoryMiB })) };
    },
  );

  app.delete('/v1/nodes/:id', { schema: { tags: ['nodes'], security: bearer, params: z.strictObject({ id: IdSchema }) } }, async (request, reply) => {
    await adminOf(service, request);
    await service.removeNode(request.params.id);
    return reply.code(204).send();
  });
}
