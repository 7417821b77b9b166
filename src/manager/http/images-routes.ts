// /v1/blobs (admin: content-addressed uploads, streamed) and /v1/images (list and show:
// any user; create and remove: admin).
import type { Readable } from 'node:stream';
import { z } from 'zod';
import type { HttpServer } from '../../http/server.js';
import { TrustlaunchError } from '../../protocol/errors.js';
import { DigestSchema } from '../../protocol/messages.js';
import { BundleManifestSchema } from '../images/bundle.js';
import { ImageNameSchema } from '../images/catalog.js';
import type { ManagerService } from '../service.js';
import { adminOf, userOf } from './auth.js';
import { ImageViewSchema, imageView } from './views.js';

const bearer = [{ bearer: [] }];
const BlobViewSchema = z.strictObject({ digest: z.string(), size: z.number() });

export const ImageCreateRequestSchema = z.union([
  z.strictObject({ name: ImageNameSchema, raw: DigestSchema, replace: z.boolean().optional() }),
  z.strictObject({ name: ImageNameSchema, bundle: BundleManifestSchema, replace: z.boolean().optional() }),
]);

export function registerImageRoutes(app: HttpServer, service: ManagerService): void {
  // Upload bodies reach the handler as the request stream itself: never buffered whole.
  app.addContentTypeParser('application/octet-stream', (_request, payload, done) => done(null, payload));

  app.get(
    '/v1/blobs/:digest',
    { schema: { tags: ['images'], security: bearer, params: z.strictObject({ digest: DigestSchema }), response: { 200: BlobViewSchema } } },
    async (request) => {
      await adminOf(service, request);
      const digest = request.params.digest;
      const size = await service.images.blobSize(digest);
      if (size === undefined) throw new TrustlaunchError('NOT_FOUND', `blob ${digest} is not stored`);
      return { digest, size };
    },
  );

  app.put(
    '/v1/blobs/:digest',
    {
      schema: {
        tags: ['images'],
        security: bearer,
        description: 'Uploads a blob (application/octet-stream); the bytes must hash to the digest in the path.',
        params: z.strictObject({ digest: DigestSchema }),
        response: { 201: BlobViewSchema },
      },
    },
    async (request, reply) => {
      await adminOf(service, request);
      const length = request.headers['content-length'];
      if (length !== undefined && Number(length) > service.config.maxBlobBytes) {
        throw new TrustlaunchError('BODY_TOO_LARGE', `a blob is at most ${service.config.maxBlobBytes} bytes`);
      }
      if (request.headers['content-type']?.split(';')[0]?.trim() !== 'application/octet-stream' || !isReadable(request.body)) {
        throw new TrustlaunchError('MALFORMED_REQUEST', 'a blob is uploaded as application/octet-stream');
      }
      const stored = await service.images.putBlob(request.body, request.params.digest);
      return reply.code(201).send({ digest: stored.digest, size: stored.size });
    },
  );

  app.get('/v1/images', { schema: { tags: ['images'], security: bearer, response: { 200: z.strictObject({ images: z.array(ImageViewSchema) }) } } }, async (request) => {
    await userOf(service, request);
    return { images: (await service.images.list()).map(imageView) };
  });

  app.get(
    '/v1/images/:ref',
    { schema: { tags: ['images'], security: bearer, params: z.strictObject({ ref: z.string().max(128) }), response: { 200: ImageViewSchema } } },
    async (request) => {
      await userOf(service, request);
      return imageView(await service.images.resolve(request.params.ref));
    },
  );

  app.post('/v1/images', { schema: { tags: ['images'], security: bearer, body: ImageCreateRequestSchema, response: { 201: ImageViewSchema } } }, async (request, reply) => {
    const admin = await adminOf(service, request);
    const body = request.body;
    const spec = 'raw' in body ? { raw: body.raw } : { bundle: body.bundle };
    const image = await service.images.create(body.name, spec, admin.name, body.replace ?? false);
    return reply.code(201).send(imageView(image));
  });

  app.delete('/v1/images/:name', { schema: { tags: ['images'], security: bearer, params: z.strictObject({ name: ImageNameSchema }) } }, async (request, reply) => {
    await adminOf(service, request);
    await service.images.remove(request.params.name);
    return reply.code(204).send();
  });
}

function isReadable(body: unknown): body is Readable {
  return typeof body === 'object' && body !== null && typeof (body as Readable).pipe === 'function';
}
