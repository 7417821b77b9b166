// A lying manager for the attack tests, built from the real one: an HTTPS front that holds
// the manager's own TLS key (the operator has it) and forwards every request to the real
// manager, with one small, explicit interposition layer in between:
//   createRequest(body)  rewrites `POST /v1/vms` before the real manager sees it
//   vmView(view)         rewrites every VM view the real manager answers with
//   extra(method, path)  answers a request itself (e.g. a receipt endpoint a naive client might call)
// Every request path is recorded, so a test can show what the client asked for.
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { readFile } from 'node:fs/promises';
import { Agent, request } from 'undici';
import { readSecretFile } from '../../../src/crypto/files.js';
import { managerPaths } from '../../../src/manager/config.js';

type Json = Record<string, unknown>;

export interface Interposition {
  readonly createRequest?: (body: Json) => Json;
  readonly vmView?: (view: Json) => Json;
  readonly extra?: (method: string, path: string) => { status: number; body: unknown } | undefined;
}

export interface HostileManager {
  readonly url: string;
  /** `METHOD /path` of every request received, in order. */
  readonly requests: string[];
  /** Replaces the interposition (and clears the request log). */
  behave(i: Interposition): void;
  close(): Promise<void>;
}

const MAX_BODY = 1 << 20;

async function body(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new Error('request body too large');
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** A VM view route: POST /v1/vms, GET /v1/vms, GET /v1/vms/{ref}, POST /v1/vms/{ref}/stop. */
const isVmRoute = (path: string): boolean => /^\/v1\/vms(?:\/[^/]+(?:\/stop)?)?$/.test(path);

export async function startHostileManager(o: { managerDir: string; upstream: string }): Promise<HostileManager> {
  const paths = managerPaths(o.managerDir);
  const tls = { cert: await readFile(paths.tlsCert, 'utf8'), key: (await readSecretFile(paths.tlsKey)).toString('utf8') };
  const upstream = new Agent({ connect: { ca: [await readFile(paths.tlsCa, 'utf8')], rejectUnauthorized: true } });
  let interposition: Interposition = {};
  const requests: string[] = [];

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const method = req.method ?? 'GET';
    const path = new URL(req.url ?? '/', 'https://x').pathname;
    requests.push(`${method} ${path}`);
    const own = interposition.extra?.(method, path);
    if (own !== undefined) {
      res.writeHead(own.status, { 'content-type': 'application/json' }).end(JSON.stringify(own.body));
      return;
    }
    let sent = await body(req);
    if (method === 'POST' && path === '/v1/vms' && interposition.createRequest !== undefined && sent.length > 0) {
      sent = Buffer.from(JSON.stringify(interposition.createRequest(JSON.parse(sent.toString('utf8')) as Json)));
    }
    const headers: Record<string, string> = { accept: 'application/json' };
    if (typeof req.headers.authorization === 'string') headers['authorization'] = req.headers.authorization;
    if (typeof req.headers['content-type'] === 'string') headers['content-type'] = req.headers['content-type'];
    const answer = await request(new URL(req.url ?? '/', o.upstream), {
      method: method as 'GET',
      headers,
      ...(sent.length === 0 ? {} : { body: sent }),
      dispatcher: upstream,
    });
    let text = await answer.body.text();
    if (isVmRoute(path) && interposition.vmView !== undefined && answer.statusCode < 300 && text !== '') {
      const json = JSON.parse(text) as Json;
      const rewrite = interposition.vmView;
      text = JSON.stringify(Array.isArray(json['vms']) ? { ...json, vms: (json['vms'] as Json[]).map((v) => rewrite(v)) } : rewrite(json));
    }
    res.writeHead(answer.statusCode, { 'content-type': 'application/json' }).end(text);
  };

  const server: Server = createServer(tls, (req, res) => {
    handle(req, res).catch((e: unknown) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'UNAVAILABLE', message: String(e) } }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no address');
  return {
    url: `https://127.0.0.1:${address.port}`,
    requests,
    behave: (i) => {
      interposition = i;
      requests.length = 0;
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await upstream.close();
    },
  };
}
