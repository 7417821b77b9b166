// One way to stand up an HTTPS JSON service, shared by the CA, the manager and the
// node's dom0 API: zod-validated bodies, `{"error":{"code","message"}}` errors, bounded
// bodies, /healthz and /readyz, an OpenAPI document at /openapi.json, and pino logs
// with secrets redacted.
import fastifySwagger from '@fastify/swagger';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type RawReplyDefaultExpression,
  type RawRequestDefaultExpression,
  type RawServerDefault,
} from 'fastify';
import {
  hasZodFastifySchemaValidationErrors,
  isResponseSerializationError,
  jsonSchemaTransform,
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from 'fastify-type-provider-zod';
import { z } from 'zod';
import { describeIssues } from '../protocol/messages.js';
import { TrustlaunchError, type ErrorCode } from '../protocol/errors.js';

export interface TlsIdentity {
  /** PEM certificate chain, leaf first. */
  readonly cert: string;
  /** PEM private key of the leaf. */
  readonly key: string;
}

export interface HttpServerOptions {
  /** Service name, used in logs and the OpenAPI title. */
  readonly name: string;
  readonly version: string;
  readonly description?: string;
  /** HTTPS identity, or `'insecure-plaintext'` — only behind an explicit development flag. */
  readonly tls: TlsIdentity | 'insecure-plaintext';
  /** Maximum request body in bytes (default 1 MiB). */
  readonly bodyLimit?: number;
  /** pino options, or false for no logging (tests). */
  readonly logger?: boolean | { level?: string; file?: string };
  /** Longest a whole request may take, upload included (default 120 s; 0 = no limit). */
  readonly requestTimeoutMs?: number;
  /** Checks for /readyz: each resolves when its dependency is usable. */
  readonly readiness?: ReadonlyArray<{ name: string; check: () => Promise<void> }>;
}

/** HTTPS and plaintext instances share this type (fastify types its raw server loosely here). */
export type HttpServer = FastifyInstance<RawServerDefault, RawRequestDefaultExpression, RawReplyDefaultExpression, FastifyBaseLogger, ZodTypeProvider>;

/** Paths pino must never print. Tokens and keys never reach logs. */
const REDACT = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-admin-token"]',
  'res.headers["set-cookie"]',
  '*.token',
  '*.password',
  '*.privateKey',
  '*.secret',
];

export const ErrorBodySchema = z.strictObject({
  error: z.strictObject({ code: z.string(), message: z.string(), detail: z.record(z.string(), z.unknown()).optional() }),
});

export function errorBody(code: ErrorCode, message: string, detail?: Readonly<Record<string, unknown>>): z.infer<typeof ErrorBodySchema> {
  return detail === undefined ? { error: { code, message } } : { error: { code, message, detail: { ...detail } } };
}

export async function createHttpServer(opts: HttpServerOptions): Promise<HttpServer> {
  const logger =
    opts.logger === undefined || opts.logger === false
      ? false
      : {
          level: opts.logger === true ? 'info' : (opts.logger.level ?? 'info'),
          redact: { paths: REDACT, censor: '[redacted]' },
          ...(opts.logger !== true && opts.logger.file !== undefined ? { file: opts.logger.file } : {}),
        };
  const base = {
    logger,
    bodyLimit: opts.bodyLimit ?? 1 << 20,
    // Path parameters are small here (ids, digests, nonces); refuse anything that is not.
    routerOptions: { maxParamLength: 256 },
    requestTimeout: opts.requestTimeoutMs ?? 120_000,
    return503OnClosing: true,
    forceCloseConnections: true,
    ajv: undefined,
  };
  const app = (
    opts.tls === 'insecure-plaintext'
      ? Fastify(base)
      : Fastify({ ...base, https: { cert: opts.tls.cert, key: opts.tls.key, minVersion: 'TLSv1.2' as const } })
  ).withTypeProvider<ZodTypeProvider>() as unknown as HttpServer;

  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);

  app.setErrorHandler((err: FastifyError | TrustlaunchError | Error, request, reply) => {
    if (err instanceof TrustlaunchError) {
      if (err.status >= 500) request.log.error({ err }, 'request failed');
      return reply.code(err.status).send(errorBody(err.code, err.message, err.detail));
    }
    if (hasZodFastifySchemaValidationErrors(err)) {
      const issues = err.validation.map((v) => `${v.instancePath === '' ? '$' : v.instancePath.slice(1).replaceAll('/', '.')}: ${v.message ?? 'invalid'}`);
      const where = (err as FastifyError).validationContext ?? 'body';
      return reply.code(400).send(errorBody('MALFORMED_REQUEST', `${where}: ${issues.slice(0, 8).join('; ')}`));
    }
    if (isResponseSerializationError(err)) {
      request.log.error({ err: { message: err.message, issues: describeIssues(err.cause) } }, 'response does not match its schema');
      return reply.code(500).send(errorBody('INTERNAL', 'response does not match its schema'));
    }
    const fe = err as FastifyError;
    if (fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return reply.code(413).send(errorBody('BODY_TOO_LARGE', `request body exceeds ${opts.bodyLimit ?? 1 << 20} bytes`));
    }
    if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
      // fastify's own client errors: bad JSON, wrong content type, empty body …
      return reply.code(fe.statusCode).send(errorBody('MALFORMED_REQUEST', fe.message));
    }
    request.log.error({ err }, 'unexpected error');
    return reply.code(500).send(errorBody('INTERNAL', 'internal error'));
  });

  app.setNotFoundHandler((request, reply) => {
    return reply.code(404).send(errorBody('NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0] ?? ''}`));
  });

  await app.register(fastifySwagger, {
    openapi: {
      info: { title: `trustlaunch ${opts.name}`, version: opts.version, ...(opts.description === undefined ? {} : { description: opts.description }) },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    },
    transform: jsonSchemaTransform,
  });

  app.get('/openapi.json', { schema: { hide: true } }, () => app.swagger());
  app.get('/healthz', { schema: { hide: true } }, () => ({ status: 'ok' }));
  app.get('/readyz', { schema: { hide: true } }, async (_request, reply) => {
    const failed: string[] = [];
    for (const r of opts.readiness ?? []) {
      try {
        await r.check();
      } catch {
        failed.push(r.name);
      }
    }
    if (failed.length > 0) return reply.code(503).send(errorBody('UNAVAILABLE', `not ready: ${failed.join(', ')}`));
    return { status: 'ready' };
  });
  return app;
}

/** Starts listening; resolves to the bound address (port 0 picks a free port). */
export async function listen(app: HttpServer, host: string, port: number): Promise<{ host: string; port: number; url: string }> {
  await app.listen({ host, port });
  const addr = app.server.address();
  if (addr === null || typeof addr === 'string') throw new TrustlaunchError('INTERNAL', 'server has no TCP address');
  const scheme = 'encrypted' in app.server || app.initialConfig.https !== undefined ? 'https' : 'http';
  const shownHost = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return { host: addr.address, port: addr.port, url: `${scheme}://${shownHost}:${addr.port}` };
}
