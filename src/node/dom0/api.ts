// dom0's HTTPS API for the manager (docs/node.md "dom0 API"). Every /v1 route needs the
// manager's bearer token (checked before any body is read, in constant time against the
// hash in the node config). Image uploads stream to disk; everything else is JSON
// validated by schema. dom0 is untrusted: nothing here can reach the device, the VM
// channels or a host key, and nothing it says is believed by users.
import type { Readable } from 'node:stream';
import { z } from 'zod';
import { bearerToken, tokenMatches } from '../../http/auth.js';
import type { HttpServer } from '../../http/server.js';
import { TrustlaunchError } from '../../protocol/errors.js';
import { DigestSchema, IdSchema } from '../../protocol/messages.js';
import type { Dom0 } from './dom0.js';
import { VmCreateSchema, VmViewSchema } from './vms.js';

const bearer = [{ bearer: [] }];
const VmParams = z.strictObject({ id: IdSchema });

export const NodeViewSchema = z.strictObject({
  id: z.string(),
  capacity: z.strictObject({ memoryMiB: z.strictObject({ total: z.number().int(), used: z.number().int() }), maxVms: z.number().int() }),
  vmCount: z.number().int(),
  /** ok: the mini-domain runs; degraded: it does not (VMs keep running, attestation waits). */
  health: z.enum(['ok', 'degraded']),
  device: z.strictObject({ kind: z.string(), bdf: z.string() }),
  miniDomain: z.strictObject({ state: z.string(), launches: z.number().int(), digest: DigestSchema }),
  attestation: z.enum(['on', 'off']),
  /** The VM backend; for QEMU the accelerator (chosen at the first boot: null until then). */
  vm: z.strictObject({
    backend: z.enum(['process', 'qemu']),
    accelerator: z.strictObject({ setting: z.enum(['auto', 'kvm', 'tcg']), accel: z.enum(['kvm', 'tcg']).nullable(), reason: z.string().nullable() }).optional(),
  }),
});

export type NodeView = z.infer<typeof NodeViewSchema>;

function isReadable(body: unknown): body is Readable {
  return typeof body === 'object' && body !== null && typeof (body as Readable).pipe === 'function';
}

/**
 * Registers dom0's routes in a scope of their own whose every request needs the manager's
 * token: the check belongs to the routes (an encapsulated onRequest hook), not to a prefix
 * of the raw URL, so no spelling of a path (percent-encoding, dot segments) gets around it.
 */
export async function registerDom0Routes(app: HttpServer, dom0: Dom0, tokenHash: string): Promise<void> {
  await app.register((scope: HttpServer, _opts: unknown, done: (e?: Error) => void) => {
    routes(scope, dom0, tokenHash);
    done();
  });
}

function routes(app: HttpServer, dom0: Dom0, tokenHash: string): void {
  app.addHook('onRequest', (request, _reply, done) => {
    try {
      if (!tokenMatches(bearerToken(request), tokenHash)) throw new TrustlaunchError('UNAUTHENTICATED', "the bearer token is not the manager's");
      done();
    } catch (e) {
      done(e as Error);
    }
  });
  // Upload bodies reach the handler as the request stream: never buffered whole.
  app.addContentTypeParser('application/octet-stream', (_request, payload, done) => done(null, payload));

  app.get('/v1/node', { schema: { tags: ['node'], security: bearer, response: { 200: NodeViewSchema } } }, () => dom0.nodeView());

  app.put(
    '/v1/images/:digest',
    {
      schema: {
        tags: ['images'],
        security: bearer,
        description: 'Stores a VM image (application/octet-stream); the bytes must hash to the digest in the path.',
        params: z.strictObject({ digest: DigestSchema }),
        response: { 201: z.strictObject({ digest: DigestSchema, size: z.number().int() }), 200: z.strictObject({ digest: DigestSchema, size: z.number().int() }) },
      },
    },
    async (request, reply) => {
      const max = dom0.images.maxBytes;
      const length = request.headers['content-length'];
      if (length !== undefined && Number(length) > max) throw new TrustlaunchError('BODY_TOO_LARGE', `an image has at most ${max} bytes`);
      if (request.headers['content-type']?.split(';')[0]?.trim() !== 'application/octet-stream' || !isReadable(request.body)) {
        throw new TrustlaunchError('MALFORMED_REQUEST', 'an image is uploaded as application/octet-stream');
      }
      const stored = await dom0.images.put(request.params.digest, request.body);
      return reply.code(stored.created ? 201 : 200).send({ digest: stored.digest, size: stored.size });
    },
  );

  app.post(
    '/v1/vms',
    { bodyLimit: 2 * 1024 * 1024, schema: { tags: ['vms'], security: bearer, body: VmCreateSchema, response: { 201: VmViewSchema } } },
    async (request, reply) => reply.code(201).send(await dom0.vms.create(request.body)),
  );

  app.get('/v1/vms', { schema: { tags: ['vms'], security: bearer, response: { 200: z.strictObject({ vms: z.array(VmViewSchema) }) } } }, () => ({ vms: dom0.vms.list() }));

  app.get('/v1/vms/:id', { schema: { tags: ['vms'], security: bearer, params: VmParams, response: { 200: VmViewSchema } } }, (request) => dom0.vms.view(request.params.id));

  app.post('/v1/vms/:id/stop', { schema: { tags: ['vms'], security: bearer, params: VmParams, response: { 200: VmViewSchema } } }, (request) => dom0.vms.stop(request.params.id));

  app.delete('/v1/vms/:id', { schema: { tags: ['vms'], security: bearer, params: VmParams } }, async (request, reply) => {
    await dom0.vms.delete(request.params.id);
    return reply.code(204).send();
  });
}
