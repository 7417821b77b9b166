import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { createHttpServer, listen, type HttpServer } from '../../src/http/server.js';
import { JsonClient } from '../../src/http/client.js';
import { TrustlaunchError, isTrustlaunchError } from '../../src/protocol/errors.js';

describe('shared HTTP server', () => {
  let app: HttpServer;
  let client: JsonClient;
  let url: string;
  let ready = true;

  before(async () => {
    app = await createHttpServer({
      name: 'test',
      version: '0',
      tls: 'insecure-plaintext',
      bodyLimit: 1024,
      readiness: [{ name: 'db', check: () => (ready ? Promise.resolve() : Promise.reject(new Error('down'))) }],
    });
    app.post('/echo', { schema: { body: z.strictObject({ n: z.number().int().max(10) }) } }, (req) => ({ n: req.body.n }));
    app.get('/refuse', () => {
      throw new TrustlaunchError('KERNEL_NOT_ALLOWED', 'not on the list');
    });
    app.get('/boom', () => {
      throw new Error('secret internal detail');
    });
    ({ url } = await listen(app, '127.0.0.1', 0));
    client = new JsonClient({ baseUrl: url });
  });
  after(async () => {
    await client.close();
    await app.close();
  });

  it('validates bodies and answers JSON', async () => {
    assert.deepEqual(await client.call('POST', '/echo', { body: { n: 3 } }), { n: 3 });
  });

  it('refuses unknown fields, wrong types and oversized values with 400 MALFORMED_REQUEST', async () => {
    for (const body of [{ n: 3, x: 1 }, { n: 'a' }, { n: 11 }, {}]) {
      await assert.rejects(client.call('POST', '/echo', { body }), (e) => isTrustlaunchError(e, 'MALFORMED_REQUEST'));
    }
  });

  it('refuses broken JSON with 400 and oversized bodies with 413', async () => {
    const bad = await fetch(`${url}/echo`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"n":' });
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as { error: { code: string } }).error.code, 'MALFORMED_REQUEST');
    const big = await fetch(`${url}/echo`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ n: 1, pad: 'x'.repeat(4096) }) });
    assert.equal(big.status, 413);
    assert.equal(((await big.json()) as { error: { code: string } }).error.code, 'BODY_TOO_LARGE');
  });

  it('maps TrustlaunchError to its status and code, and hides unexpected errors', async () => {
    await assert.rejects(client.call('GET', '/refuse'), (e) => isTrustlaunchError(e, 'KERNEL_NOT_ALLOWED') && e.message === 'not on the list');
    const res = await fetch(`${url}/boom`);
    assert.equal(res.status, 500);
    const text = await res.text();
    assert.ok(!text.includes('secret internal detail'));
    assert.equal((JSON.parse(text) as { error: { code: string } }).error.code, 'INTERNAL');
  });

  it('answers unknown routes with a JSON 404', async () => {
    await assert.rejects(client.call('GET', '/nope'), (e) => isTrustlaunchError(e, 'NOT_FOUND'));
  });

  it('serves health, readiness and OpenAPI', async () => {
    assert.deepEqual(await client.call('GET', '/healthz'), { status: 'ok' });
    assert.deepEqual(await client.call('GET', '/readyz'), { status: 'ready' });
    ready = false;
    await assert.rejects(client.call('GET', '/readyz'), (e) => isTrustlaunchError(e, 'UNAVAILABLE'));
    ready = true;
    const doc = await client.call<{ openapi: string; paths: Record<string, unknown> }>('GET', '/openapi.json');
    assert.match(doc.openapi, /^3\./);
    assert.ok('/echo' in doc.paths);
  });

  it('reports an unreachable server as UNAVAILABLE', async () => {
    const dead = new JsonClient({ baseUrl: 'http://127.0.0.1:1', timeoutMs: 2000 });
    await assert.rejects(dead.call('GET', '/healthz'), (e) => isTrustlaunchError(e, 'UNAVAILABLE'));
    await dead.close();
  });
});
